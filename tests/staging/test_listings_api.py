"""The listings API and the labelled output download: create with several images, read, export; 4xx edges."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from PIL import Image

from staging.models import Listing, StagingJob
from tests.fixtures.photos import image_bytes, upload
from tests.fixtures.pipeline import drive
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.usefixtures("_loopback_only")  # see tests/staging/conftest.py
URL = "/api/v1/listings"
MODEL = "flux-kontext-pro"


def photos(n: int = 3) -> list:
    return [upload(image_bytes(color=(40 * i, 120, 200)), name=f"room{i}.jpg") for i in range(n)]


def post_listing(client: Client, **fields):
    fields.setdefault("images", photos())
    fields.setdefault("model", MODEL)
    fields.setdefault("name", "12 Elm St")
    return client.post(URL, fields)


def originals() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT) / "staging" / "originals"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def locs(response) -> list[tuple]:
    assert response.status_code == 422, response.content
    return [tuple(error["loc"]) for error in response.json()["detail"]]


@pytest.fixture
def configured(settings) -> None:
    """A token is set but nothing reaches Replicate (the on_commit submit never runs in these tests)."""
    settings.REPLICATE_API_TOKEN = "r8_not_used"


@pytest.fixture
def nothing_stored():
    before = originals()
    yield
    assert not Listing.objects.exists() and not StagingJob.objects.exists()
    assert originals() == before


@pytest.mark.django_db(transaction=True)
def test_listing_of_three_photos_stages_and_exports(pipeline, operator, operator_client) -> None:
    response = post_listing(
        operator_client, style="coastal", room_types=["living room", "bedroom", "kitchen"], instructions="warm light"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["model"], body["style"]) == ("12 Elm St", MODEL, "coastal")
    assert [job["room_type"] for job in body["jobs"]] == ["living room", "bedroom", "kitchen"]
    assert {(job["style"], job["seed"], job["listing"]) for job in body["jobs"]} == {
        ("coastal", body["seed"], body["id"])
    }
    assert {job.created_by for job in StagingJob.objects.filter(listing=body["id"])} == {operator}  # who sees them
    for job in body["jobs"]:
        assert drive(job["id"]) == "succeeded"
    listed = operator_client.get(f"{URL}/{body['id']}").json()
    assert [job["status"] for job in listed["jobs"]] == ["succeeded"] * 3

    for label, labelled in (("none", False), ("default", True)):
        export = operator_client.get(f"{URL}/{body['id']}/export", {"label": label})
        assert export.status_code == 200 and export["Content-Type"] == "application/zip"
        assert "attachment" in export["Content-Disposition"]
        archive = zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content)))
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["label"] == label and len(manifest["photos"]) == 3
        assert all(photo["staged"][0]["labelled"] is labelled for photo in manifest["photos"])


@pytest.mark.django_db(transaction=True)
def test_output_download_clean_or_labelled(pipeline, operator_client) -> None:
    created = operator_client.post("/api/v1/jobs", {"image": upload(), "model": MODEL}).json()
    assert drive(created["id"]) == "succeeded"
    base = f"/api/v1/jobs/{created['id']}/outputs/0"
    clean = b"".join(operator_client.get(base, {"label": "none"}).streaming_content)
    default = b"".join(operator_client.get(base).streaming_content)
    labelled_response = operator_client.get(base, {"label": "default"})
    assert labelled_response.status_code == 200
    labelled = b"".join(labelled_response.streaming_content)
    assert clean == default != labelled
    assert Image.open(io.BytesIO(labelled)).size == Image.open(io.BytesIO(clean)).size
    # Asking again serves the same stored derivative; the clean output is unchanged.
    assert b"".join(operator_client.get(base, {"label": "default"}).streaming_content) == labelled
    assert b"".join(operator_client.get(base).streaming_content) == clean
    job = operator_client.get(f"/api/v1/jobs/{created['id']}").json()
    assert "labelled" in job["outputs"][0]["derivatives"]
    bad = operator_client.get(base, {"label": "shouty"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "label"


@pytest.mark.django_db
def test_job_added_to_a_listing_takes_its_style_and_seed(configured, operator_client) -> None:
    listing = Listing.objects.create(name="L", model_slug=MODEL, style="boho", seed=42)
    response = operator_client.post("/api/v1/jobs", {"image": upload(), "model": MODEL, "listing": listing.pk})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["style"], body["seed"], body["listing"]) == ("boho", 42, listing.pk)
    other_model = operator_client.post(
        "/api/v1/jobs", {"image": upload(), "model": "seedream-4", "listing": listing.pk}
    )
    assert locs(other_model) == [("body", "model")]
    other_style = operator_client.post(
        "/api/v1/jobs", {"image": upload(), "model": MODEL, "listing": listing.pk, "style": "modern"}
    )
    assert locs(other_style) == [("body", "style")]


@pytest.mark.django_db
def test_unknown_listing_is_422_on_create_and_404_on_read(configured, operator_client) -> None:
    response = operator_client.post("/api/v1/jobs", {"image": upload(), "model": MODEL, "listing": 999})
    assert locs(response) == [("body", "listing")]
    assert operator_client.get(f"{URL}/999").status_code == 404
    assert operator_client.get(f"{URL}/999/export").status_code == 404
    assert not StagingJob.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"images": []}, [("body", "images")]),
        ({"model": "dall-e"}, [("body", "model")]),
        ({"name": ""}, [("body", "name")]),
        ({"room_types": ["bedroom"]}, [("body", "room_types")]),
        ({"config": "{not json"}, [("body", "config")]),
        ({"listing": "3"}, [("body", "listing")]),
    ],
)
def test_bad_fields_are_422_and_store_nothing(configured, operator_client, nothing_stored, fields, expected) -> None:
    assert locs(post_listing(operator_client, **fields)) == expected


@pytest.mark.django_db
def test_a_non_image_file_is_named_and_nothing_is_stored(configured, operator_client, nothing_stored) -> None:
    files = [*photos(2), upload(b"%PDF-1.4 not a photo", name="floorplan.pdf", content_type="application/pdf")]
    assert locs(post_listing(operator_client, images=files)) == [("body", "images", 2)]


@pytest.mark.django_db
def test_json_body_is_refused(configured, operator_client, nothing_stored) -> None:
    response = operator_client.post(URL, json.dumps({"name": "x"}), content_type="application/json")
    assert locs(response) == [("body",)]


@pytest.mark.django_db
def test_permissions(configured, nothing_stored) -> None:
    viewer = logged_in(make_staff("looker", "view_stagingjob"))
    assert post_listing(viewer).status_code == 403
    assert Client().post(URL, {"name": "x"}).status_code == 401
    listing = Listing.objects.create(name="L", model_slug=MODEL)
    bare = logged_in(make_staff("bare2"))
    assert bare.get(f"{URL}/{listing.pk}").status_code == 403
    assert bare.get(f"{URL}/{listing.pk}/export").status_code == 403
    assert viewer.get(f"{URL}/{listing.pk}").status_code == 200
    listing.delete()
