"""The jobs API end to end: uploads and image URLs through the emulator, 422 shapes, auth, reprocess, OpenAPI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from models_config import services as config_services
from staging import fetch
from staging.models import Attempt, StagedImage, StagingJob
from tests.fixtures.photos import image_bytes, upload
from tests.fixtures.pipeline import drive

pytestmark = pytest.mark.usefixtures("_loopback_only")  # see tests/staging/conftest.py
URL = "/api/v1/jobs"
MODEL = "flux-kontext-pro"
JOB_KEYS = {
    "id",
    "uid",
    "status",
    "model",
    "room_type",
    "style",
    "instructions",
    "seed",
    "config_override",
    "listing",
    "photo",
    "created_by",
    "created_at",
    "updated_at",
    "attempts",
    "outputs",
    "chosen",
    "chosen_by_staff",
}
ATTEMPT_KEYS = {
    "number",
    "state",
    "error",
    "error_class",
    "held_reason",
    "held_at",
    "config_version",
    "config_source",
    "arm",
    "prediction_id",
    "predict_time",
    "cost",
    "created_at",
    "submitted_at",
    "finished_at",
    "outputs",
}


def post_upload(client: Client, **fields):
    fields.setdefault("image", upload())
    fields.setdefault("model", MODEL)
    return client.post(URL, fields)


def post_json(client: Client, body, **headers):
    return client.post(URL, json.dumps(body), content_type="application/json", headers=headers)


def originals() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT) / "staging" / "originals"
    return sorted(root.rglob("*")) if root.exists() else []


def locs(response) -> list[tuple]:
    assert response.status_code == 422, response.content
    detail = response.json()["detail"]
    assert all({"loc", "msg", "type"} <= set(error) and error["msg"] for error in detail)
    return [tuple(error["loc"]) for error in detail]


@pytest.fixture
def pipeline(pipeline, settings):
    """The shared pipeline settings, with image URLs held to public addresses and config rows stored."""
    settings.STAGING_FETCH_ALLOW_PRIVATE = False
    config_services.ensure_config_rows()
    return pipeline


@pytest.fixture
def configured(settings) -> None:
    """A token is set but nothing will reach Replicate (the on_commit submit never runs in these tests)."""
    settings.REPLICATE_API_TOKEN = "r8_not_used"
    settings.STAGING_FETCH_ALLOW_PRIVATE = False


@pytest.fixture
def nothing_stored():
    before = originals()
    yield
    assert StagingJob.objects.count() == 0 and Attempt.objects.count() == 0
    assert originals() == before


# --- happy paths --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_upload_creates_a_job_that_ends_with_stored_outputs(pipeline, operator_client) -> None:
    response = post_upload(
        operator_client,
        room_type="bedroom",
        style="scandinavian",
        instructions="a reading chair",
        seed="7",
        config=json.dumps({"output_format": "jpg"}),
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == JOB_KEYS
    assert (body["model"], body["room_type"], body["style"], body["seed"]) == (MODEL, "bedroom", "scandinavian", 7)
    assert body["config_override"] == {"output_format": "jpg"}
    assert body["status"] in ("queued", "running")
    assert [a["number"] for a in body["attempts"]] == [1] and body["outputs"] == []
    assert body["photo"]["url"] == f"http://testserver{URL}/{body['id']}/original"  # permission-checked
    assert (body["photo"]["width"], body["photo"]["height"]) == (64, 48)

    assert drive(body["id"]) == "succeeded"
    job = operator_client.get(f"{URL}/{body['id']}").json()
    assert job["status"] == "succeeded" and job["uid"] == body["uid"]
    (attempt,) = job["attempts"]
    assert set(attempt) == ATTEMPT_KEYS
    assert attempt["state"] == "succeeded" and attempt["config_version"] == 1 and attempt["config_source"] == "override"
    assert attempt["arm"] == "active"  # no canary runs
    assert attempt["cost"] > 0 and attempt["predict_time"] is not None and attempt["finished_at"]
    assert len(job["outputs"]) == 1
    output = job["outputs"][0]
    stored = StagedImage.objects.get()
    assert output["url"] == f"http://testserver{URL}/{body['id']}/outputs/0?attempt=1"  # stable after a choice
    thumbnail_url = f"http://testserver{URL}/{body['id']}/outputs/0/thumbnail?attempt=1"
    assert output["thumbnail_url"] == thumbnail_url
    assert output["derivatives"] == {"thumbnail": thumbnail_url}
    data = stored.file.read()
    assert output["checksum"] == hashlib.sha256(data).hexdigest() and output["size"] == len(data)
    assert (output["width"], output["height"]) == (stored.width, stored.height)
    assert output["chosen"] and job["chosen"] == output and not job["chosen_by_staff"]  # the default deliverable
    assert attempt["outputs"] == [output]
    assert pipeline.counters()["creates_total"] == 1


@pytest.mark.django_db(transaction=True)
def test_image_url_creates_a_job_from_the_downloaded_photo(pipeline, operator_client, photo_server, settings) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    response = post_json(operator_client, {"image_url": photo_server.url("/room.jpg"), "model": MODEL})
    assert response.status_code == 201, response.content
    job = StagingJob.objects.get(pk=response.json()["id"])
    assert job.photo.read() == photo_server.routes["/room.jpg"][2]
    assert (job.photo_width, job.photo_height) == (80, 60)
    assert drive(job.pk) == "succeeded"


@pytest.mark.django_db
def test_token_auth_needs_no_csrf(configured, operator, token_for) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        URL, {"image": upload(), "model": MODEL}, headers={"Authorization": f"Bearer {token_for(operator)}"}
    )
    assert response.status_code == 201, response.content
    assert StagingJob.objects.count() == 1


@pytest.mark.django_db
def test_superuser_may_create(configured) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    assert post_upload(client).status_code == 201


# --- SSRF through the API -----------------------------------------------------------------------


REFUSED = [
    "http://127.0.0.1:{port}/room.jpg",
    "http://10.0.0.1/room.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/room.jpg",
    "http://[::ffff:127.0.0.1]:{port}/room.jpg",
    "http://localhost:{port}/room.jpg",
    "http://2130706433:{port}/room.jpg",  # 127.0.0.1 as one number
    "http://0.0.0.0:{port}/room.jpg",
    "ftp://127.0.0.1/room.jpg",
    "file:///etc/passwd",
]


@pytest.mark.django_db
@pytest.mark.parametrize("template", REFUSED)
def test_non_public_image_urls_are_refused_before_connecting(
    template, configured, operator_client, photo_server, nothing_stored, _loopback_only
) -> None:
    url = template.format(port=photo_server.base.rsplit(":", 1)[1])
    response = post_json(operator_client, {"image_url": url, "model": MODEL})
    assert locs(response) == [("body", "image_url")]
    assert photo_server.hits == [] and _loopback_only == []


@pytest.mark.django_db
def test_redirect_to_a_private_address_is_refused(
    configured, operator_client, photo_server, nothing_stored, _loopback_only, monkeypatch
) -> None:
    real = fetch.address_allowed  # vet for real, but let the first hop reach the test's own server
    monkeypatch.setattr(fetch, "address_allowed", lambda ip: str(ip) == "127.0.0.1" or real(ip))
    photo_server.routes["/go"] = (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")
    response = post_json(operator_client, {"image_url": photo_server.url("/go"), "model": MODEL})
    assert locs(response) == [("body", "image_url")]
    assert "non-public" in response.json()["detail"][0]["msg"]
    assert [path for path, _ in photo_server.hits] == ["/go"] and _loopback_only == []


@pytest.mark.django_db
def test_oversize_download_is_refused(configured, operator_client, photo_server, settings, nothing_stored) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    settings.STAGING_MAX_UPLOAD_BYTES = 20_000
    photo_server.routes["/huge.jpg"] = (200, {"X-Omit-Length": "1"}, b"\xff" * 500_000)
    response = post_json(operator_client, {"image_url": photo_server.url("/huge.jpg"), "model": MODEL})
    assert locs(response) == [("body", "image_url")]
    assert "limit" in response.json()["detail"][0]["msg"]


@pytest.mark.django_db
def test_downloaded_non_image_is_refused(configured, operator_client, photo_server, settings, nothing_stored) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    photo_server.routes["/page"] = (200, {"Content-Type": "text/html"}, b"<html>hello</html>")
    response = post_json(operator_client, {"image_url": photo_server.url("/page"), "model": MODEL})
    assert locs(response) == [("body", "image_url")]


@pytest.mark.django_db
def test_unknown_model_is_refused_before_downloading(configured, operator_client, photo_server, settings) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    response = post_json(operator_client, {"image_url": photo_server.url("/room.jpg"), "model": "nope"})
    assert locs(response) == [("body", "model")]
    assert photo_server.hits == []


# --- 422 shapes for uploads and JSON ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"image": None}, [("body", "image")]),
        ({"model": None}, [("body", "model")]),
        ({"model": "no-such-model"}, [("body", "model")]),
        ({"seed": "abc"}, [("body", "seed")]),
        ({"seed": "-1"}, [("body", "seed")]),
        ({"room_type": "x" * 101}, [("body", "room_type")]),
        ({"config": "{not json"}, [("body", "config")]),
        ({"config": "[1, 2]"}, [("body", "config")]),
        ({"config": json.dumps({"safety_tolerance": 99})}, [("body", "config", "safety_tolerance")]),
        ({"config": json.dumps({"bogus": 1})}, [("body", "config", "bogus")]),
        ({"image": b"not an image"}, [("body", "image")]),
        ({"image": b""}, [("body", "image")]),
        ({"image_url": "http://example.com/x.jpg"}, [("body", "image_url")]),
        ({"surprise": "field"}, [("body", "surprise")]),
        ({"image": None, "seed": "x"}, [("body", "seed"), ("body", "image")]),
    ],
)
def test_invalid_upload_is_422_per_field_and_stores_nothing(
    fields, expected, configured, operator_client, nothing_stored
) -> None:
    data = {"image": upload(), "model": MODEL, **fields}
    if isinstance(data["image"], bytes):
        data["image"] = upload(data["image"])
    data = {key: value for key, value in data.items() if value is not None}
    assert locs(operator_client.post(URL, data)) == expected


@pytest.mark.django_db
def test_oversize_upload_is_422(configured, operator_client, settings, nothing_stored) -> None:
    settings.STAGING_MAX_UPLOAD_BYTES = 1000
    response = post_upload(operator_client, image=upload(image_bytes(size=(300, 300)) + b"\0" * 2000))
    assert locs(response) == [("body", "image")]
    assert "limit" in response.json()["detail"][0]["msg"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": MODEL}, [("body", "image_url")]),
        ({"image_url": "https://example.com/x.jpg"}, [("body", "model")]),
        ({"image_url": "https://example.com/x.jpg", "model": MODEL, "seed": "x"}, [("body", "seed")]),
        ({"image_url": "https://example.com/x.jpg", "model": MODEL, "config": "{}"}, [("body", "config")]),
        ({"image_url": "https://example.com/x.jpg", "model": MODEL, "image": "x"}, [("body", "image")]),
        ([1, 2], [("body",)]),
    ],
)
def test_invalid_json_body_is_422_per_field(body, expected, configured, operator_client, nothing_stored) -> None:
    assert locs(post_json(operator_client, body)) == expected


@pytest.mark.django_db
def test_malformed_json_and_other_content_types_are_422(configured, operator_client, nothing_stored) -> None:
    response = operator_client.post(URL, "{oops", content_type="application/json")
    assert locs(response) == [("body",)] and response.json()["detail"][0]["type"] == "json_invalid"
    response = operator_client.post(URL, "model=x", content_type="application/x-www-form-urlencoded")
    assert locs(response) == [("body",)]


@pytest.mark.django_db
def test_invalid_config_in_json_points_into_the_config(configured, operator_client, monkeypatch) -> None:
    monkeypatch.setattr(fetch, "fetch_image", lambda url: image_bytes())  # no network: the URL is never used
    body = {"image_url": "https://photos.example/x.jpg", "model": MODEL, "config": {"safety_tolerance": 5}}
    assert locs(post_json(operator_client, body)) == [("body", "config", "safety_tolerance")]
    assert StagingJob.objects.count() == 0


@pytest.mark.django_db
def test_without_replicate_token_answers_503(settings, operator_client, photo_server, nothing_stored) -> None:
    settings.REPLICATE_API_TOKEN = ""
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    response = post_upload(operator_client)
    assert response.status_code == 503 and "REPLICATE_API_TOKEN" in response.json()["detail"]
    response = post_json(operator_client, {"image_url": photo_server.url("/room.jpg"), "model": MODEL})
    assert response.status_code == 503 and photo_server.hits == []


# --- authentication and permissions -------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_is_401(configured, nothing_stored) -> None:
    client = Client()
    assert post_upload(client).status_code == 401
    assert client.get(f"{URL}/1").status_code == 401
    assert client.post(f"{URL}/1/reprocess").status_code == 401
    assert post_upload(client, headers={"Authorization": "Bearer stg_wrong"}).status_code == 401


@pytest.mark.django_db
def test_non_staff_and_missing_permissions_are_403(configured, make_user, nothing_stored) -> None:
    customer = User.objects.create_user("customer", password="pw")
    bare = make_user("bare")
    viewer = make_user("viewer", "view_stagingjob")
    for user, message in ((customer, "Staff only"), (bare, "staging.add_stagingjob"), (viewer, "add_stagingjob")):
        client = Client()
        client.force_login(user)
        response = post_upload(client)
        assert response.status_code == 403 and message in response.json()["detail"]
    client = Client()
    client.force_login(bare)
    assert client.get(f"{URL}/1").status_code == 404  # may read only its own jobs (tests/staging/test_jobs_list.py)
    client.force_login(viewer)
    assert client.post(f"{URL}/1/reprocess").status_code == 403


@pytest.mark.django_db
def test_session_post_needs_csrf(configured, operator) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = post_upload(client)
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert StagingJob.objects.count() == 0


# --- GET and reprocess --------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_shows_no_secrets_and_404s_unknown_ids(configured, operator_client, make_user, settings) -> None:
    settings.STAGING_PUBLIC_URL = "https://staging.example"
    job_id = post_upload(operator_client).json()["id"]
    attempt = Attempt.objects.get(job_id=job_id)
    Attempt.objects.filter(pk=attempt.pk).update(input={"input_image": "https://signed.example/?sig=secret-sig"})
    viewer = make_user("viewer", "view_stagingjob")
    client = Client()
    client.force_login(viewer)
    response = client.get(f"{URL}/{job_id}")
    assert response.status_code == 200
    assert set(response.json()) == JOB_KEYS
    text = response.content.decode()
    for secret in (attempt.token, "webhook", "secret-sig", settings.REPLICATE_API_TOKEN):
        assert secret not in text
    assert client.get(f"{URL}/999999").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_reprocess_adds_an_attempt_and_409s_while_one_runs(pipeline, operator_client) -> None:
    job_id = post_upload(operator_client).json()["id"]
    # The synchronous queue submitted attempt 1 already: it is at Replicate now.
    response = operator_client.post(f"{URL}/{job_id}/reprocess")
    assert response.status_code == 409 and "still" in response.json()["detail"]
    assert drive(job_id) == "succeeded"

    bad = operator_client.post(f"{URL}/{job_id}/reprocess", {"config": {"safety_tolerance": 9}}, "application/json")
    assert locs(bad) == [("body", "config", "safety_tolerance")]
    assert Attempt.objects.filter(job_id=job_id).count() == 1

    response = operator_client.post(
        f"{URL}/{job_id}/reprocess", {"config": {"output_format": "jpg"}}, "application/json"
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == ATTEMPT_KEYS and body["number"] == 2
    assert StagingJob.objects.get(pk=job_id).config_override == {"output_format": "jpg"}
    assert drive(job_id) == "succeeded"
    job = operator_client.get(f"{URL}/{job_id}").json()
    assert [a["state"] for a in job["attempts"]] == ["succeeded", "succeeded"]
    assert job["outputs"][0]["content_type"] == "image/jpeg"  # the outputs of the latest attempt
    assert pipeline.counters()["creates_total"] == 2
    assert operator_client.post(f"{URL}/999999/reprocess").status_code == 404


# --- OpenAPI ------------------------------------------------------------------------------------


def test_openapi_lists_the_jobs_endpoints() -> None:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "post" in paths["/api/v1/jobs"]
    assert "get" in paths["/api/v1/jobs/{job_id}"]
    assert "post" in paths["/api/v1/jobs/{job_id}/reprocess"]
    content = paths["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert "image_url" in content["application/json"]["schema"]["properties"]
    assert content["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"


@pytest.mark.django_db
def test_reprocess_body_must_be_json(configured, operator_client) -> None:
    job_id = post_upload(operator_client).json()["id"]
    assert locs(operator_client.post(f"{URL}/{job_id}/reprocess", {"config": "x"})) == [("body",)]
    bad = operator_client.post(f"{URL}/{job_id}/reprocess", {"config": [1]}, "application/json")
    assert locs(bad) == [("body", "config")]
    assert Attempt.objects.filter(job_id=job_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_an_unfinished_job(pipeline, operator_client, make_job, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)  # the submit waits in the queue: the job stays unfinished
    job = make_job()
    response = operator_client.post(f"{URL}/{job.pk}/cancel")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "canceled" and body["attempts"][0]["state"] == "canceled"
    assert "through the API" in body["attempts"][0]["error"]
    again = operator_client.post(f"{URL}/{job.pk}/cancel")
    assert again.status_code == 409 and "nothing to cancel" in again.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_cancel_needs_the_change_permission_and_a_job(pipeline, make_job, make_user):
    from tests.fixtures.users import logged_in

    viewer = logged_in(make_user("watcher", "view_stagingjob"))
    job = make_job()
    assert viewer.post(f"{URL}/{job.pk}/cancel").status_code == 403
    assert logged_in(make_user("boss", "change_stagingjob")).post(f"{URL}/999999/cancel").status_code == 404
