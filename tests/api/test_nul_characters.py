"""NUL characters in any text a request can store are a 422 field error, and nothing is stored.

PostgreSQL refuses U+0000 in text and JSON (a DataError, which was a 500), so these matter most when
run on PostgreSQL; SQLite would store them. One rule (`models_config.schemas.reject_nul`) covers the
job's fields, the config (and so a job's override) and a version's comment.
"""

from __future__ import annotations

import json

import pytest

from models_config import services
from models_config.models import ModelConfig, ModelConfigVersion
from staging import fetch
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import image_bytes, upload
from tests.fixtures.users import logged_in, make_staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("_photo_from_memory")]

NUL = "\x00"
SLUG = "qwen-image-edit"
JOBS = "/api/v1/jobs"
CONFIG = f"/api/v1/admin/models/{SLUG}/config"


@pytest.fixture
def _photo_from_memory(monkeypatch):
    """Nothing here fetches a photo: the JSON body's image_url is answered from memory."""
    monkeypatch.setattr(fetch, "fetch_image", lambda url: image_bytes())


@pytest.fixture
def client(settings):
    """May create and reprocess jobs and change configs, so only the NUL can be what is refused."""
    settings.REPLICATE_API_TOKEN = "r8_not_used"  # outside a transaction test the queued submit never runs
    services.ensure_config_rows()
    user = make_staff("nul", "add_stagingjob", "change_stagingjob", "view_modelconfig", "change_modelconfig")
    return logged_in(user)


def locs(response) -> list[list]:
    assert response.status_code == 422, response.content
    return [error["loc"] for error in response.json()["detail"]]


def nothing_stored() -> bool:
    versions = ModelConfigVersion.objects.filter(model_config__slug=SLUG).count()
    return StagingJob.objects.count() == 0 and Attempt.objects.count() == 0 and versions == 1


# --- the jobs API -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["room_type", "style", "instructions"])
def test_job_text_fields_in_a_form_upload(client, field) -> None:
    response = client.post(JOBS, {"image": upload(), "model": SLUG, field: f"a{NUL}b"})
    assert locs(response) == [["body", field]]
    assert "NUL" in response.json()["detail"][0]["msg"]
    assert nothing_stored()


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"room_type": NUL}, ["body", "room_type"]),
        ({"instructions": f"a chair{NUL}"}, ["body", "instructions"]),
        ({"config": {"prompt_template": f"Stage the {{room_type}} now{NUL}"}}, ["body", "config", "prompt_template"]),
        ({"config": {"output_format": f"png{NUL}"}}, ["body", "config", "output_format"]),
        ({"config": {f"seed{NUL}": 1}}, ["body", "config", f"seed{NUL}"]),
    ],
)
def test_job_fields_and_override_values_in_a_json_body(client, extra, loc) -> None:
    body = {"image_url": "https://photos.example/room.jpg", "model": SLUG, **extra}
    assert locs(client.post(JOBS, json.dumps(body), content_type="application/json")) == [loc]
    assert nothing_stored()


def test_a_reprocess_override_with_nul(client) -> None:
    job_id = client.post(JOBS, {"image": upload(), "model": SLUG}).json()["id"]
    Attempt.objects.filter(job_id=job_id).update(state="failed")
    body = {"config": {"prompt_template": f"Stage the {{room_type}}{NUL} now"}}
    response = client.post(f"{JOBS}/{job_id}/reprocess", json.dumps(body), content_type="application/json")
    assert locs(response) == [["body", "config", "prompt_template"]]
    assert Attempt.objects.filter(job_id=job_id).count() == 1
    assert StagingJob.objects.get(pk=job_id).config_override is None


# --- the config API -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"config": {"prompt_template": f"Stage the {{room_type}}{NUL} now"}, "comment": "ok"}, "prompt_template"),
        ({"config": {}, "comment": f"why{NUL}"}, "comment"),
    ],
)
def test_config_put(client, body, loc) -> None:
    response = client.put(CONFIG, json.dumps({**body, "base_version": 1}), content_type="application/json")
    (error_loc,) = locs(response)
    assert (error_loc[0], error_loc[-1]) == ("body", loc)
    assert nothing_stored()


# --- the admin ----------------------------------------------------------------------------------


def admin_url(suffix: str) -> str:
    return f"/admin/models_config/modelconfig/{ModelConfig.objects.get(slug=SLUG).pk}/{suffix}"


def test_admin_form_comment_and_template(client) -> None:
    config = services.get_spec(SLUG).default_config().model_dump(mode="json")
    response = client.post(
        admin_url("change/"), {"config": json.dumps(config), "comment": f"why{NUL}", "base_version": "1"}
    )
    assert response.status_code == 200 and "comment" in response.context["adminform"].form.errors

    config["prompt_template"] = f"Stage the {{room_type}}{NUL} now"
    response = client.post(admin_url("change/"), {"config": json.dumps(config), "comment": "why", "base_version": "1"})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert "NUL characters" in response.content.decode()
    assert nothing_stored()


def test_admin_reset_with_a_nul_comment(client) -> None:
    response = client.post(admin_url("reset/"), {"comment": f"reset{NUL}", "base_version": "1"}, follow=True)
    assert response.status_code == 200 and "NUL characters" in response.content.decode()
    assert nothing_stored()
