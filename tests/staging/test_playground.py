"""The playground: the exact input of a draft for a real photo, and one paid, confirmed try of it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from models_config.registry import get_spec
from models_config.selectors import get_active_config
from staging import playground, selectors
from staging.models import StagingJob
from staging.reprocessing import run_job
from tests.fixtures.pipeline import drive
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "flux-kontext-pro"
PERMS = ("add_stagingjob", "view_stagingjob", "change_stagingjob", "view_modelconfig", "change_modelconfig")


@pytest.fixture
def tuner() -> Client:
    return logged_in(make_staff("tuner", *PERMS))


@pytest.fixture
def source(make_job) -> StagingJob:
    job = make_job(SLUG, room_type="bedroom", style="japandi", instructions="a low bed")
    assert run_job(job.pk, timeout=20, interval=0.05).status == "succeeded"
    return job


def draft_config(**changes) -> dict:
    config = get_active_config(SLUG).config.model_dump(mode="json")
    config["prompt_template"] = "Furnish this {room_type} in {style} style. {instructions}"
    return {**config, **changes}


def test_preview_is_the_builders_input_for_that_photo(source: StagingJob, settings) -> None:
    settings.STAGING_PUBLIC_URL = "https://staging.example.com"
    draft = playground.Draft(SLUG, draft_config(), "bedroom", "japandi", "a low bed")
    result = playground.preview(draft, source)
    assert not result.errors
    image_url = result.replicate_input["input_image"]
    assert image_url.startswith("https://staging.example.com/files/")  # the job's own photo, signed
    expected = selectors.resolve_input(source, image_url, override=draft_config()).input  # what a submit sends
    assert result.replicate_input == expected
    assert result.replicate_input["prompt"].startswith("Furnish this bedroom in japandi style. A low bed")
    assert result.estimated_cost == get_spec(SLUG).estimate_cost(get_spec(SLUG).config_schema(**draft_config()))


def test_preview_page_then_confirmed_try_runs_once(source: StagingJob, tuner: Client, pipeline) -> None:
    url = reverse("staging-playground", args=[SLUG])
    page = tuner.get(url, {"job": source.pk})
    assert page.status_code == 200 and f'value="{source.pk}" selected' in page.content.decode()
    form = {"job": source.pk, "room_type": "bedroom", "style": "japandi", "config": json.dumps(draft_config())}
    creates = pipeline.counters()["creates_total"]

    shown = tuner.post(url, {**form, "action": "preview"}).content.decode()
    assert "Furnish this bedroom in japandi style." in shown and 'id="estimated-cost">$0.04' in shown
    unconfirmed = tuner.post(url, {**form, "action": "try"})  # no cost posted back: nothing runs
    assert unconfirmed.status_code == 200 and 'id="confirm-note"' in unconfirmed.content.decode()
    wrong = tuner.post(url, {**form, "action": "try", "confirmed_cost": "0.01"})
    assert wrong.status_code == 200 and 'id="confirm-note"' in wrong.content.decode()
    assert StagingJob.objects.filter(is_try=True).count() == 0 and pipeline.counters()["creates_total"] == creates

    cost = str(get_spec(SLUG).estimate_cost(get_spec(SLUG).config_schema(**draft_config())))
    tried = tuner.post(url, {**form, "action": "try", "confirmed_cost": cost})
    assert tried.status_code == 302
    attempt_job = StagingJob.objects.get(is_try=True)
    assert tried["Location"] == reverse("staging-playground-result", args=[attempt_job.pk]) + f"?against={source.pk}"
    assert drive(attempt_job) == "succeeded"
    assert pipeline.counters()["creates_total"] == creates + 1  # exactly one paid prediction
    attempt = attempt_job.attempts.get()
    assert attempt.input["prompt"].startswith("Furnish this bedroom in japandi style.") and attempt.cost == Decimal(
        cost
    )
    assert source.attempts.count() == 1 and StagingJob.objects.get(pk=source.pk).chosen_output is None  # untouched

    result = tuner.get(tried["Location"]).content.decode()
    assert f"/api/v1/jobs/{attempt_job.pk}/outputs/0?attempt=1" in result  # the draft's output
    assert f"/api/v1/jobs/{source.pk}/outputs/0?attempt=1" in result  # beside the earlier version's
    assert 'id="try-status">succeeded' in result


def test_invalid_draft_shows_field_errors_and_runs_nothing(source: StagingJob, tuner: Client, pipeline) -> None:
    url = reverse("staging-playground", args=[SLUG])
    creates = pipeline.counters()["creates_total"]
    bad = {"job": source.pk, "config": json.dumps(draft_config(safety_tolerance=9)), "confirmed_cost": "0.04"}
    for action in ("preview", "try"):
        page = tuner.post(url, {**bad, "action": action})
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="draft-errors"' in html and "<code>safety_tolerance</code>" in html
    not_json = tuner.post(url, {"job": source.pk, "config": "{oops", "action": "preview"}).content.decode()
    assert "The draft must be a JSON object." in not_json
    assert StagingJob.objects.filter(is_try=True).count() == 0 and pipeline.counters()["creates_total"] == creates


def test_trying_needs_both_permissions(source: StagingJob) -> None:
    viewer = logged_in(make_staff("looker", "view_modelconfig", "view_stagingjob"))
    url = reverse("staging-playground", args=[SLUG])
    assert viewer.get(url).status_code == 200
    cost = str(get_spec(SLUG).estimate_cost(get_spec(SLUG).config_schema(**draft_config())))
    form = {"job": source.pk, "config": json.dumps(draft_config()), "action": "try", "confirmed_cost": cost}
    assert viewer.post(url, form).status_code == 403
    assert logged_in(make_staff("nobody")).get(url).status_code == 403
    assert StagingJob.objects.filter(is_try=True).count() == 0


def test_tries_are_left_out_of_listings_metrics_and_reprocessing(source: StagingJob, make_job) -> None:
    from staging.metrics import attempts_of
    from staging.reprocessing import select_jobs

    tried = make_job(SLUG)
    StagingJob.objects.filter(pk=tried.pk).update(is_try=True)
    assert drive(tried) == "succeeded"
    boss = logged_in(make_staff("boss", "view_stagingjob"))
    listed = boss.get(reverse("admin:staging_stagingjob_changelist")).context["cl"].result_list
    assert [job.pk for job in listed] == [source.pk]
    only_tries = boss.get(reverse("admin:staging_stagingjob_changelist"), {"kind": "tries"}).context["cl"]
    assert [job.pk for job in only_tries.result_list] == [tried.pk]
    assert list(attempts_of(SLUG).values_list("job_id", flat=True)) == [source.pk]
    assert list(select_jobs(model=SLUG).values_list("pk", flat=True)) == [source.pk]


def test_an_uploaded_photo_can_be_tried(tuner: Client, pipeline) -> None:
    from tests.fixtures.photos import upload

    url = reverse("staging-playground", args=[SLUG])
    form = {"room_type": "office", "config": json.dumps(draft_config())}
    shown = tuner.post(url, {**form, "action": "preview"}).content.decode()
    assert playground.UPLOAD_PLACEHOLDER in shown and "Furnish this office" in shown
    missing = tuner.post(url, {**form, "action": "try", "confirmed_cost": "0.04"}).content.decode()
    assert "Pick a job&#x27;s photo or upload one." in missing and not StagingJob.objects.exists()
    tried = tuner.post(url, {**form, "action": "try", "confirmed_cost": "0.04", "photo": upload()})
    assert tried.status_code == 302
    job = StagingJob.objects.get()
    assert job.is_try and drive(job) == "succeeded" and job.room_type == "office"
