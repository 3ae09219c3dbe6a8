"""A job's prompt is checked when the job is created and once more in the worker, before anything is paid.

Templates saved now always fit (tests/models_config/test_prompt_templates.py); these cover what was
stored before the rules or under a larger STAGING_MAX_PROMPT_CHARS: a 422 at the door when the job's
own prompt cannot be sent, and in the worker a permanent failure that says what to fix, with no create
(docs/architecture.md#prompt-templates).
"""

from __future__ import annotations

import json

import pytest

from models_config import services as config_services
from staging import services
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import upload
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.usefixtures("_loopback_only")
URL = "/api/v1/jobs"
MODEL = "flux-kontext-pro"
# About 720 characters with short fields: fits 1,000 only while the instructions stay short.
LONG_TEMPLATE = "Stage the {room_type} in {style}. {instructions} " + "Keep everything unchanged. " * 25
BAD_TEMPLATE = "Stage the {room_type!x} room now"


@pytest.fixture
def configured(settings) -> None:
    """A token is set but nothing reaches Replicate: outside a transaction test the queued submit never runs."""
    settings.REPLICATE_API_TOKEN = "r8_not_used"


@pytest.fixture
def editor_operator(db):
    """May create jobs and change configs: nothing here is refused for want of a permission."""
    return make_staff("chief", "add_stagingjob", "change_stagingjob", "view_stagingjob", "change_modelconfig")


@pytest.fixture
def queued(pipeline):
    """Jobs whose submit has not run yet: outside a transaction test, on_commit tasks never fire."""
    config_services.ensure_config_rows()

    def make(**kwargs) -> Attempt:
        job = services.create_job(upload(), MODEL, policy=services.OPERATOR, **kwargs)
        return job.attempts.get()

    return make


def failed_permanently(attempt: Attempt) -> str:
    attempt.refresh_from_db()
    assert (attempt.state, attempt.error_class) == ("failed", "permanent"), attempt.error
    return attempt.error


# --- at the door --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_override_with_a_bad_template_is_422_and_stores_nothing(configured, editor_operator) -> None:
    client = logged_in(editor_operator)
    override = {"prompt_template": BAD_TEMPLATE}
    response = client.post(URL, {"image": upload(), "model": MODEL, "config": json.dumps(override)})
    assert response.status_code == 422, response.content
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "config", "prompt_template"] and "{room_type!x}" in error["msg"]
    assert StagingJob.objects.count() == 0


@pytest.mark.django_db
def test_a_job_whose_prompt_would_be_over_the_cap_is_422_on_its_instructions(
    configured, editor_operator, settings
) -> None:
    config_services.ensure_config_rows()
    config_services.save_version(MODEL, {"prompt_template": LONG_TEMPLATE}, author=None, comment="long")
    settings.STAGING_MAX_PROMPT_CHARS = 1000  # lowered after the template was saved
    client = logged_in(editor_operator)

    response = client.post(URL, {"image": upload(), "model": MODEL, "instructions": "a sofa " * 60})
    assert response.status_code == 422, response.content
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "instructions"] and "over the limit of 1000" in error["msg"]
    assert StagingJob.objects.count() == 0

    response = client.post(
        URL,
        {
            "image": upload(),
            "model": MODEL,
            "config": json.dumps({"prompt_template": LONG_TEMPLATE}),
            "instructions": "a sofa " * 60,
        },
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "config", "prompt_template"]

    assert client.post(URL, {"image": upload(), "model": MODEL, "instructions": "a sofa"}).status_code == 201


@pytest.mark.django_db
def test_reprocess_with_an_override_checks_the_prompt_too(configured, editor_operator) -> None:
    client = logged_in(editor_operator)
    job_id = client.post(URL, {"image": upload(), "model": MODEL}).json()["id"]
    Attempt.objects.filter(job_id=job_id).update(state="failed")
    body = json.dumps({"config": {"prompt_template": "{instructions}            "}})
    response = client.post(f"{URL}/{job_id}/reprocess", body, content_type="application/json")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "config", "prompt_template"]
    assert Attempt.objects.filter(job_id=job_id).count() == 1
    assert StagingJob.objects.get(pk=job_id).config_override is None


# --- in the worker ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_override_stored_before_the_rules_fails_the_attempt_permanently_without_a_create(pipeline, queued) -> None:
    attempt = queued()
    StagingJob.objects.filter(pk=attempt.job_id).update(config_override={"prompt_template": BAD_TEMPLATE})
    services.submit_attempt(attempt.pk)
    message = failed_permanently(attempt)
    assert message.startswith(f"The configuration for {MODEL} is invalid: prompt_template: Only the placeholders")
    assert "{room_type!x}" in message and "Reprocess the job with a corrected config override" in message
    assert pipeline.counters()["creates_total"] == 0

    # what the message says to do works: a corrected override replaces the stored one
    services.retry_job(attempt.job_id, {})
    assert StagingJob.objects.get(pk=attempt.job_id).config_override is None


@pytest.mark.django_db
def test_a_prompt_over_a_lowered_cap_fails_the_attempt_permanently_without_a_create(pipeline, queued, settings) -> None:
    attempt = queued(instructions="a green sofa and a lamp")
    settings.STAGING_MAX_PROMPT_CHARS = 100  # lowered between the job's creation and its submit
    services.submit_attempt(attempt.pk)
    message = failed_permanently(attempt)
    assert message.startswith("The prompt for this job cannot be sent: The prompt is ")
    assert "over the limit of 100 (STAGING_MAX_PROMPT_CHARS)" in message
    assert pipeline.counters()["creates_total"] == 0
    assert attempt.input is None  # nothing was recorded as sent


@pytest.mark.django_db
def test_a_prompt_within_the_cap_is_sent(pipeline, queued) -> None:
    attempt = queued(instructions="a green sofa")
    services.submit_attempt(attempt.pk)
    attempt.refresh_from_db()
    assert attempt.state in ("submitted", "processing", "collecting", "succeeded"), attempt.error
    assert "A green sofa." in attempt.input["prompt"]
    assert pipeline.counters()["creates_total"] == 1
