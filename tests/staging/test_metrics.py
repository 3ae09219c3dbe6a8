"""Per-version metrics: counted, timed and priced by the database, compared with the previous version."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from models_config import services as config_services
from staging import metrics
from staging.models import Attempt, StagedImage, StagingJob
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.django_db
SLUG = "flux-kontext-pro"
URL = f"/api/v1/admin/models/{SLUG}/config/metrics"


def version(number: int, slug: str = SLUG):
    return config_services.selectors.get_version(slug, number)


def attempt(
    state: str,
    *,
    number_of_version: int | None,
    predict: float | None = None,
    e2e: float | None = None,
    error_class: str = "",
    cost: str | None = None,
    images: int = 0,
    slug: str = SLUG,
    arm: str = "active",
) -> Attempt:
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug=slug)
    created = job.created_at
    a = Attempt.objects.create(
        job=job,
        number=1,
        state=state,
        config_version=version(number_of_version, slug) if number_of_version else None,
        predict_time=predict,
        error_class=error_class,
        cost=Decimal(cost) if cost else None,
        finished_at=created + timedelta(seconds=e2e) if e2e is not None else None,
        arm=arm,
    )
    for index in range(images):
        StagedImage.objects.create(
            attempt=a,
            index=index,
            source_url="https://x",
            file=f"o{a.pk}-{index}.png",
            content_type="image/png",
            size=1,
            checksum="0",
            width=1,
            height=1,
        )
    return a


@pytest.fixture
def two_versions(django_user_model):
    config_services.save_version(SLUG, {"safety_tolerance": 1}, author=None, comment="stricter")  # v2
    for predict, e2e in [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (4.0, 40.0)]:
        attempt("succeeded", number_of_version=1, predict=predict, e2e=e2e, cost="0.04", images=1)
    attempt("failed", number_of_version=1, predict=9.0, error_class="transient")
    attempt("succeeded", number_of_version=2, predict=5.0, e2e=50.0, cost="0.04", images=1)
    attempt("failed", number_of_version=2, error_class="permanent")
    attempt("canceled", number_of_version=2)
    attempt("processing", number_of_version=2)
    attempt("succeeded", number_of_version=1, predict=99.0, e2e=99.0, cost="0.03", images=1, slug="seedream-4")


def test_figures_per_version_newest_first_compared_with_the_previous(two_versions):
    v2, v1 = metrics.by_version(SLUG)
    assert (v2.version, v2.compared_with, v1.version, v1.compared_with) == (2, 1, 1, None)
    assert (v1.attempts, v1.succeeded, v1.failed_transient, v1.failed_permanent, v1.canceled) == (5, 4, 1, 0, 0)
    assert v1.success_rate == pytest.approx(0.8)
    assert (v1.predict_p50, v1.predict_p95) == (3.0, 9.0)  # nearest rank over 1, 2, 3, 4, 9
    assert (v1.end_to_end_p50, v1.end_to_end_p95) == (20.0, 40.0)  # succeeded attempts only
    assert (v1.images, v1.cost) == (4, Decimal("0.16"))
    assert (v2.attempts, v2.succeeded, v2.failed_permanent, v2.canceled, v2.in_progress) == (4, 1, 1, 1, 1)
    assert v2.success_rate == pytest.approx(1 / 3)
    assert (v2.images, v2.cost, v2.end_to_end_p50) == (1, Decimal("0.04"), 50.0)


def test_a_time_window_and_the_code_defaults(two_versions):
    Attempt.objects.filter(config_version__number=1).update(created_at=timezone.now() - timedelta(days=10))
    attempt("failed", number_of_version=None, error_class="permanent")
    since = timezone.now() - timedelta(days=1)
    by = {m.version: m for m in metrics.by_version(SLUG, since=since)}
    assert set(by) == {2, None}
    assert by[None].attempts == 1 and by[None].success_rate == 0.0


def test_the_database_does_the_work(two_versions):
    with CaptureQueriesContext(connection) as queries:
        metrics.by_version(SLUG)
    # Grouping, images, and per version four percentile reads of two queries each: no row-by-row reads.
    assert len(queries) <= 2 + 2 * 8


def test_the_api_serves_them_to_config_viewers_only(two_versions):
    viewer = logged_in(make_staff("viewer", "view_modelconfig"))
    body = viewer.get(URL).json()
    assert [row["version"] for row in body] == [2, 1]
    assert body[1]["success_rate"] == pytest.approx(0.8) and body[1]["cost"] == "0.1600"
    assert logged_in(make_staff("bare")).get(URL).status_code == 403
    assert viewer.get("/api/v1/admin/models/nope/config/metrics").status_code == 404
    assert viewer.get(URL, {"since": "yesterday"}).status_code == 422


def test_a_version_run_as_candidate_and_as_active_is_two_rows_side_by_side(two_versions):
    """v2 was a canary's candidate before it was promoted: its two arms are counted apart, active first."""
    attempt("succeeded", number_of_version=2, predict=7.0, e2e=70.0, cost="0.04", images=2, arm="candidate")
    attempt("failed", number_of_version=2, error_class="transient", arm="candidate")
    v2_active, v2_candidate, v1 = metrics.by_version(SLUG)
    assert [(m.version, m.arm) for m in (v2_active, v2_candidate, v1)] == [
        (2, "active"),
        (2, "candidate"),
        (1, "active"),
    ]
    assert (v2_active.attempts, v2_active.succeeded, v2_active.images) == (4, 1, 1)  # as before: unchanged
    assert (v2_candidate.attempts, v2_candidate.succeeded, v2_candidate.failed_transient) == (2, 1, 1)
    assert (v2_candidate.images, v2_candidate.cost, v2_candidate.predict_p50) == (2, Decimal("0.04"), 7.0)
    assert v2_active.compared_with == v2_candidate.compared_with == 1 and v1.compared_with is None
    body = logged_in(make_staff("viewer", "view_modelconfig")).get(URL).json()
    assert [(row["version"], row["arm"]) for row in body] == [(2, "active"), (2, "candidate"), (1, "active")]


def test_metrics_read_times_with_any_offset_in_utc(admin_client) -> None:
    """An offset PostgreSQL refuses (past ±15:59) is converted to UTC, never a 500."""
    url = "/api/v1/admin/models/flux-kontext-pro/config/metrics"
    assert admin_client.get(url, {"since": "2026-03-10T00:00:00-18:24"}).status_code == 200
    assert admin_client.get(url, {"until": "0001-01-01T00:00:00+01:00"}).status_code == 422
