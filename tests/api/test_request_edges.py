"""Requests the API cannot read or use, through the real endpoints: a JSON 4xx naming the problem, nothing stored.

Each class of bad input is tried on every endpoint that reads a body, with DEBUG on (where an unhandled
error is a traceback page) and off: a multipart body without a boundary, a body over
`DATA_UPLOAD_MAX_MEMORY_SIZE`, too many fields; config override keys that are not ASCII (their error
location keeps them as sent); and the CSRF check of a session, whose refusal says which rule failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from models_config import services as config_services
from models_config.models import ModelConfigVersion
from staging.models import Attempt, StagingJob
from tests.fixtures.config_rows import changed_config
from tests.fixtures.photos import upload
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.django_db
SLUG = "qwen-image-edit"
CONFIG_URL = f"/api/v1/admin/models/{SLUG}/config"
THREE_MB = 3 * 1024 * 1024


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


@pytest.fixture
def root(db, settings) -> User:
    settings.REPLICATE_API_TOKEN = "r8_test"  # so job creation gets as far as the input checks
    config_services.ensure_config_rows()
    return make_staff("root", is_superuser=True)


@pytest.fixture
def api(root: User, token_for) -> Client:
    return Client(raise_request_exception=False, headers={"Authorization": f"Bearer {token_for(root)}"})


@pytest.fixture
def finished_job(root: User) -> StagingJob:
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug=SLUG)
    Attempt.objects.create(job=job, number=1, state=Attempt.State.FAILED)
    return job


def stored() -> tuple:
    """Everything a refused request must leave as it was: jobs, attempts, config versions, media files."""
    media = Path(django_settings.MEDIA_ROOT)
    files = sorted(str(path) for path in media.rglob("*") if path.is_file()) if media.exists() else []
    versions = sorted(ModelConfigVersion.objects.values_list("model_config__slug", "number", "config"))
    return StagingJob.objects.count(), list(Attempt.objects.values_list("pk", "state", "number")), versions, files


def json_answer(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()


# --- bodies that cannot be read -----------------------------------------------------------------


def endpoints(job: StagingJob) -> list[tuple[str, str]]:
    return [
        ("post", "/api/v1/jobs"),
        ("put", CONFIG_URL),
        ("post", f"{CONFIG_URL}/versions/1/activate"),
        ("post", f"/api/v1/jobs/{job.pk}/reprocess"),
    ]


def test_a_multipart_body_without_a_boundary_is_400(api: Client, finished_job, debug) -> None:
    before = stored()
    for method, url in endpoints(finished_job):
        response = getattr(api, method)(url, data=b"--x\r\n\r\n", content_type="multipart/form-data")
        assert response.status_code == 400, (method, url, response.content[:300])
        assert json_answer(response)["detail"], (method, url)
    assert stored() == before


def test_the_create_endpoint_names_the_unreadable_multipart_body(api: Client, debug) -> None:
    response = api.post("/api/v1/jobs", data=b"--x\r\n", content_type="multipart/form-data")
    assert response.status_code == 400
    assert json_answer(response)["detail"].startswith("The request body could not be read: Invalid boundary")


def test_a_json_body_over_the_memory_limit_is_413(api: Client, finished_job, debug) -> None:
    body = json.dumps({"config": {}, "comment": "x" * THREE_MB, "model": SLUG, "image_url": "https://x/y.jpg"})
    before = stored()
    for method, url in endpoints(finished_job):
        response = getattr(api, method)(url, data=body, content_type="application/json")
        assert response.status_code == 413, (method, url, response.content[:300])
        assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in json_answer(response)["detail"]
    assert stored() == before


def test_a_form_field_over_the_memory_limit_is_413_but_a_large_photo_file_is_not_counted(api: Client, debug) -> None:
    before = stored()
    response = api.post("/api/v1/jobs", {"image": upload(), "model": SLUG, "instructions": "x" * THREE_MB})
    assert response.status_code == 413
    assert "files do not count" in json_answer(response)["detail"]
    assert stored() == before


def test_too_many_form_fields_is_400(api: Client, settings, debug) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    before = stored()
    response = api.post("/api/v1/jobs", {"image": upload(), "model": SLUG, **{f"f{i}": "1" for i in range(10)}})
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in json_answer(response)["detail"]
    assert stored() == before


def test_a_session_post_without_a_boundary_is_400_not_a_csrf_crash(root: User, debug) -> None:
    """Django's CSRF check reads the form for its token field: the unreadable body is found there first."""
    client = logged_in(root, enforce_csrf_checks=True, raise_request_exception=False)
    client.get("/admin/")  # a csrftoken cookie, so the check goes on to look for the token in the form
    response = client.post("/api/v1/jobs", data=b"--x\r\n", content_type="multipart/form-data")
    assert response.status_code == 400
    assert json_answer(response)["detail"].startswith("The request body could not be read")


# --- config override keys: locations keep what was sent -----------------------------------------


@pytest.mark.parametrize("key", ["²", "٣", "3", "½", "0x1", "a.b", ""])
def test_an_override_key_is_reported_as_the_string_it_was(api: Client, key: str, debug) -> None:
    before = stored()
    response = api.post("/api/v1/jobs", {"image": upload(), "model": SLUG, "config": json.dumps({key: 1})})
    assert response.status_code == 422
    assert json_answer(response)["detail"] == [
        {"loc": ["body", "config", key], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]
    assert stored() == before


def test_an_override_of_a_known_key_keeps_pydantics_error_type(api: Client, debug) -> None:
    response = api.post("/api/v1/jobs", {"image": upload(), "model": SLUG, "config": json.dumps({"go_fast": []})})
    assert response.status_code == 422
    [item] = json_answer(response)["detail"]
    assert (item["loc"], item["type"]) == (["body", "config", "go_fast"], "bool_type")


def test_reprocess_with_a_non_ascii_digit_key_is_422_and_keeps_the_stored_override(
    api: Client, finished_job: StagingJob, debug
) -> None:
    before = stored()
    response = api.post(f"/api/v1/jobs/{finished_job.pk}/reprocess", {"config": {"٣": 1}}, "application/json")
    assert response.status_code == 422
    assert [item["loc"] for item in json_answer(response)["detail"]] == [["body", "config", "٣"]]
    assert stored() == before


def test_an_unknown_model_is_a_field_error_of_model(api: Client, debug) -> None:
    response = api.post("/api/v1/jobs", {"image": upload(), "model": "nope"})
    assert response.status_code == 422
    assert [item["loc"] for item in json_answer(response)["detail"]] == [["body", "model"]]


# --- CSRF: the refusal says which rule failed ---------------------------------------------------


@pytest.fixture
def editor_session(db) -> Callable[..., Client]:
    config_services.ensure_config_rows()
    user = make_staff("ed", "view_modelconfig", "change_modelconfig")

    def make(*, with_cookie: bool = True) -> Client:
        client = logged_in(user, enforce_csrf_checks=True)
        if with_cookie:
            client.get("/admin/")  # sets the csrftoken cookie, as every admin page does
        return client

    return make


def put_config(client: Client, **headers: str):
    body = json.dumps({"config": changed_config(SLUG), "comment": "from a browser", "base_version": 1})
    return client.put(CONFIG_URL, body, "application/json", headers=headers)


def test_a_foreign_origin_is_refused_as_such(editor_session) -> None:
    client = editor_session()
    before = stored()
    response = put_config(
        client, **{"X-CSRFToken": client.cookies["csrftoken"].value, "Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "Origin checking failed - https://evil.example does not match any trusted origins." in detail
    assert "another site" in detail
    assert "X-CSRFToken" not in detail  # sending a token would not help: the origin is the problem
    assert stored() == before


@pytest.mark.parametrize(
    ("with_cookie", "headers", "reason", "hint"),
    [
        (False, {}, "CSRF cookie not set.", "Open an admin page first"),
        (True, {}, "CSRF token missing.", "Send the csrftoken cookie's value in the X-CSRFToken header."),
        (True, {"X-CSRFToken": "x" * 32}, "incorrect", "must be the csrftoken cookie's current value"),
        (True, {"X-CSRFToken": "short"}, "has incorrect length", "must be the csrftoken cookie's current value"),
    ],
)
def test_each_token_problem_has_its_own_message(editor_session, with_cookie, headers, reason, hint) -> None:
    before = stored()
    response = put_config(editor_session(with_cookie=with_cookie), **headers)
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert detail.startswith("CSRF check failed: ")
    assert reason in detail and hint in detail
    assert "Origin" not in detail
    assert stored() == before


def test_the_same_origin_with_its_token_passes(editor_session) -> None:
    client = editor_session()
    headers = {"X-CSRFToken": client.cookies["csrftoken"].value, "Origin": "http://testserver"}
    assert put_config(client, **headers).status_code == 201


def test_json_nested_deeper_than_the_parser_goes_is_invalid_json(api: Client, finished_job, debug) -> None:
    before = stored()
    deep = "[" * 100_000
    for url in ("/api/v1/jobs", f"/api/v1/jobs/{finished_job.pk}/reprocess"):  # parsed by the jobs API itself
        response = api.post(url, data=deep, content_type="application/json")
        assert response.status_code == 422, (url, response.content[:300])
        assert json_answer(response)["detail"] == [
            {"loc": ["body"], "msg": "The body is not valid JSON.", "type": "json_invalid"}
        ]
    response = api.put(CONFIG_URL, data=deep, content_type="application/json")  # parsed by ninja
    assert (response.status_code, json_answer(response)["detail"][:25]) == (400, "Cannot parse request body")
    response = api.post("/api/v1/jobs", {"image": upload(), "model": SLUG, "config": deep})
    assert response.status_code == 422
    assert [item["loc"] for item in json_answer(response)["detail"]] == [["body", "config"]]
    assert stored() == before
