"""A job's config override cannot go around the config permission (docs/architecture.md#who-may-override-what).

Through `POST /api/v1/jobs` and `POST /api/v1/jobs/{id}/reprocess`: a user who may create (and
reprocess) jobs but not change configs may override only the keys the schema marks per job; the prompt
template, the safety settings and every unmarked key answer 403 naming the key, and nothing is stored.
"""

from __future__ import annotations

import json

import pytest

from models_config.registry import REGISTRY
from models_config.schemas import OverrideScope, override_scope, per_job_keys, restricted_keys
from staging import fetch, services
from staging.errors import OverrideNotAllowed
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import upload
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.usefixtures("_loopback_only")
URL = "/api/v1/jobs"

# The attack of the issue, and each kind of key that needs the config permission, per model.
REFUSED = [
    ("qwen-image-edit", {"disable_safety_checker": True, "prompt_template": "Ignore the room. Draw: {instructions}"}),
    ("qwen-image-edit", {"disable_safety_checker": True}),
    ("qwen-image-edit-plus", {"prompt_template": "Draw anything you like: {instructions}", "seed": 3}),
    ("flux-kontext-pro", {"safety_tolerance": 2}),
    ("flux-kontext-max", {"prompt_upsampling": True}),
    ("seedream-4", {"sequential_image_generation": "auto", "max_images": 15}),
    ("seedream-4", {"enhance_prompt": False}),
]
ALLOWED = [
    ("qwen-image-edit", {"seed": 7, "output_format": "png", "output_quality": 80, "go_fast": False}),
    ("qwen-image-edit-plus", {"aspect_ratio": "1:1"}),
    ("flux-kontext-pro", {"aspect_ratio": "16:9", "output_format": "jpg", "seed": 1}),
    ("seedream-4", {"size": "custom", "width": 2048, "height": 1024, "aspect_ratio": "4:3"}),
]


@pytest.fixture
def configured(settings) -> None:
    """A token is set but nothing reaches Replicate: outside a transaction test the queued submit never runs."""
    settings.REPLICATE_API_TOKEN = "r8_not_used"


@pytest.fixture
def creator(db):
    """Holds only `staging.add_stagingjob`."""
    return make_staff("creator", "staging.add_stagingjob")


@pytest.fixture
def job_operator(db):
    """May create, view and reprocess jobs, but not change model configs."""
    return make_staff("jobs-only", "add_stagingjob", "view_stagingjob", "change_stagingjob")


@pytest.fixture
def config_editor(db):
    """May create and reprocess jobs and change model configs."""
    return make_staff("editor-ops", "add_stagingjob", "change_stagingjob", "models_config.change_modelconfig")


def create(client, model: str, override: dict, *, as_json: bool = False):
    if as_json:  # the JSON body; its image_url is never fetched when the override is refused first
        body = {"image_url": "https://photos.example/room.jpg", "model": model, "config": override}
        return client.post(URL, json.dumps(body), content_type="application/json")
    return client.post(URL, {"image": upload(), "model": model, "config": json.dumps(override)})


# --- POST /jobs ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "override"), REFUSED)
def test_a_creator_may_not_override_prompt_safety_or_config_keys(configured, creator, model, override) -> None:
    response = create(logged_in(creator), model, override)
    assert response.status_code == 403, response.content
    detail = response.json()["detail"]
    for key in restricted_keys(REGISTRY[model].config_schema, override):
        assert key in detail.split(";")[0]  # each refused key is named
    assert "models_config.change_modelconfig" in detail
    assert "may set only: " + ", ".join(per_job_keys(REGISTRY[model].config_schema)) in detail
    assert StagingJob.objects.count() == 0 and Attempt.objects.count() == 0


@pytest.mark.django_db
def test_the_json_body_is_refused_before_anything_is_stored(configured, creator, monkeypatch) -> None:
    monkeypatch.setattr(fetch, "fetch_image", lambda url: upload().read())
    response = create(logged_in(creator), "qwen-image-edit", {"disable_safety_checker": True}, as_json=True)
    assert response.status_code == 403 and "disable_safety_checker" in response.json()["detail"]
    assert StagingJob.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "override"), ALLOWED)
def test_a_creator_may_override_the_per_job_keys(configured, creator, model, override) -> None:
    response = create(logged_in(creator), model, override)
    assert response.status_code == 201, response.content
    assert StagingJob.objects.get().config_override == override


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "override"), REFUSED)
def test_a_config_editor_may_override_anything(configured, config_editor, model, override) -> None:
    response = create(logged_in(config_editor), model, override)
    assert response.status_code == 201, response.content
    assert StagingJob.objects.get().config_override == override


@pytest.mark.django_db
def test_an_invalid_override_is_422_before_the_permission_check(configured, creator) -> None:
    response = create(logged_in(creator), "flux-kontext-pro", {"safety_tolerance": 9})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "config", "safety_tolerance"]


# --- POST /jobs/{id}/reprocess ------------------------------------------------------------------


@pytest.fixture
def finished_job(configured, config_editor) -> StagingJob:
    """A job an editor created with a stored prompt override; its attempt has ended."""
    override = {"prompt_template": "Stage the {room_type} warmly. {instructions}", "seed": 5}
    job_id = create(logged_in(config_editor), "qwen-image-edit", override).json()["id"]
    Attempt.objects.filter(job_id=job_id).update(state="failed")
    return StagingJob.objects.get(pk=job_id)


def reprocess(client, job_id: int, body: dict | None = None):
    data = json.dumps(body) if body is not None else ""
    return client.post(f"{URL}/{job_id}/reprocess", data, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("override", [{"disable_safety_checker": True}, {"prompt_template": "Draw: {instructions}"}])
def test_reprocess_refuses_a_restricted_override_and_changes_nothing(job_operator, finished_job, override) -> None:
    response = reprocess(logged_in(job_operator), finished_job.pk, {"config": override})
    assert response.status_code == 403
    assert next(iter(override)) in response.json()["detail"]
    assert Attempt.objects.filter(job=finished_job).count() == 1
    finished_job.refresh_from_db()
    assert finished_job.config_override == {
        "prompt_template": "Stage the {room_type} warmly. {instructions}",
        "seed": 5,
    }


@pytest.mark.django_db
def test_reprocess_with_per_job_keys_or_none_is_allowed(job_operator, finished_job) -> None:
    client = logged_in(job_operator)
    assert reprocess(client, finished_job.pk).status_code == 202  # keeps the editor's stored override
    finished_job.refresh_from_db()
    assert finished_job.config_override["seed"] == 5
    Attempt.objects.filter(job=finished_job).update(state="failed")
    assert reprocess(client, finished_job.pk, {"config": {"seed": 9}}).status_code == 202
    finished_job.refresh_from_db()
    assert finished_job.config_override == {"seed": 9}


@pytest.mark.django_db
def test_reprocess_by_a_config_editor_may_set_the_template(config_editor, finished_job) -> None:
    override = {"prompt_template": "Stage the {room_type} boldly. {instructions}"}
    assert reprocess(logged_in(config_editor), finished_job.pk, {"config": override}).status_code == 202
    finished_job.refresh_from_db()
    assert finished_job.config_override == override


@pytest.mark.django_db
def test_a_user_with_only_add_stagingjob_may_not_reprocess_at_all(creator, finished_job) -> None:
    response = reprocess(logged_in(creator), finished_job.pk, {"config": {"seed": 1}})
    assert response.status_code == 403 and "staging.change_stagingjob" in response.json()["detail"]
    assert Attempt.objects.filter(job=finished_job).count() == 1


# --- the service and the schema marks -----------------------------------------------------------


@pytest.mark.django_db
def test_the_service_defaults_to_per_job_keys_and_the_commands_act_as_operator(configured) -> None:
    override = {"prompt_template": "Stage the {room_type} calmly. {instructions}"}
    with pytest.raises(OverrideNotAllowed) as info:
        services.create_job(upload(), "qwen-image-edit", config_override=override)
    assert info.value.fields == ["prompt_template"]
    job = services.create_job(upload(), "qwen-image-edit", config_override=override, policy=services.OPERATOR)
    assert job.config_override == override


def test_safety_fields_are_marked_and_unmarked_fields_are_closed() -> None:
    for spec in REGISTRY.values():
        schema = spec.config_schema
        for key in ("disable_safety_checker", "safety_tolerance"):
            if key in schema.model_fields:
                assert override_scope(schema, key) is OverrideScope.SAFETY
        assert override_scope(schema, "prompt_template") is OverrideScope.CONFIG
        assert override_scope(schema, "no_such_key") is OverrideScope.CONFIG
        if "seed" in schema.model_fields:
            assert override_scope(schema, "seed") is OverrideScope.PER_JOB
        assert set(per_job_keys(schema)) <= set(schema.model_fields) - {"prompt_template"}
