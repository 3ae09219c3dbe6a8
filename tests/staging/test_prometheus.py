"""`/metrics`: Prometheus text read from the database, for the metrics token or staff only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from staging import services
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import upload
from tests.fixtures.pipeline import drive
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.django_db


def add(
    state: str,
    *,
    slug: str = "seedream-4",
    prediction: str | None = None,
    cost: str | None = None,
    error_class: str = "",
) -> None:
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug=slug)
    Attempt.objects.create(
        job=job,
        number=1,
        state=state,
        prediction_id=prediction,
        error_class=error_class,
        cost=Decimal(cost) if cost else None,
    )


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_staff_read_the_pipeline_figures():
    add("succeeded", prediction="p1", cost="0.03")
    add("succeeded", prediction="p2", cost="0.03")
    add("failed", prediction="p3", error_class="transient")
    add("processing", prediction="p4")
    add("queued", slug="flux-kontext-pro")
    response = logged_in(make_staff("ops")).get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    got = samples(response.content.decode())
    seedream = (("model", "seedream-4"),)
    assert got[("staging_predictions_created_total", seedream)] == 4
    assert got[("staging_attempts_in_flight", seedream)] == 1
    assert got[("staging_spend_usd_total", seedream)] == pytest.approx(0.06)
    finished = (
        "staging_attempts_finished_total",
        (("error_class", "transient"), ("model", "seedream-4"), ("outcome", "failed")),
    )
    assert got[finished] == 1
    assert got[("staging_predictions_created_total", (("model", "flux-kontext-pro"),))] == 0
    assert ("staging_queue_depth", ()) in got


def test_the_metrics_token_or_nothing(settings):
    settings.METRICS_TOKEN = "m-secret"
    anonymous = Client()
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer m-secret"}).status_code == 200
    assert logged_in(make_staff("notstaff", is_staff=False)).get("/metrics").status_code == 401


@pytest.mark.django_db(transaction=True)  # the job's first task is queued at commit
def test_refused_creates_by_status_and_collect_time_through_the_pipeline(pipeline, settings):
    """Refusals counted where the worker meets them, in the database, so every process's add up."""
    pipeline.set_faults(create_500=2, create_429=1)
    job = services.create_job(upload(), "seedream-4")
    assert drive(job) == "succeeded"
    got = samples(logged_in(make_staff("ops")).get("/metrics").content.decode())
    seedream = ("model", "seedream-4")
    assert got[("staging_creates_refused_total", (seedream, ("status", "500")))] == 2
    assert got[("staging_creates_refused_total", (seedream, ("status", "429")))] == 1
    assert got[("staging_collect_seconds_count", (seedream,))] == 1
    assert got[("staging_collect_seconds_sum", (seedream,))] >= 0
    assert pipeline.counters()["creates_total"] == 1  # refusals are not paid
