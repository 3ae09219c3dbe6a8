"""Listings: three photos staged alike in one transaction, restaged together, exported as a zip."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from PIL import Image

from staging import listings
from staging.errors import JobInputError
from staging.models import Attempt, Listing, StagingJob
from tests.fixtures.photos import image_bytes, upload
from tests.fixtures.pipeline import drive

pytestmark = pytest.mark.usefixtures("_loopback_only")  # see tests/staging/conftest.py
ROOMS = ["living room", "bedroom", "kitchen"]


def three_photos() -> list[listings.Photo]:
    colors = [(200, 150, 90), (90, 150, 200), (150, 200, 90)]
    return [
        listings.Photo(upload(image_bytes(color=color), name=f"room{i}.jpg"), room)
        for i, (color, room) in enumerate(zip(colors, ROOMS, strict=True))
    ]


def originals() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT) / "staging" / "originals"
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def staged_listing(model: str = "flux-kontext-pro") -> Listing:
    listing = listings.create_listing("12 Elm St", model, three_photos(), style="scandinavian")
    for job in listing.jobs.all():
        assert drive(job) == "succeeded"
    return listing


@pytest.mark.django_db(transaction=True)
def test_three_photos_share_style_model_and_seed(pipeline):
    listing = listings.create_listing("12 Elm St", "flux-kontext-pro", three_photos(), style="japandi")
    jobs = list(listing.jobs.order_by("pk"))
    assert [job.room_type for job in jobs] == ROOMS
    assert {(job.style, job.model_slug, job.seed) for job in jobs} == {("japandi", "flux-kontext-pro", listing.seed)}
    assert listing.seed is not None  # drawn once for all photos
    for job in jobs:
        assert drive(job) == "succeeded"
    sent = [job.attempts.get().input for job in jobs]
    assert {attempt["seed"] for attempt in sent} == {listing.seed}
    assert all("japandi" in attempt["prompt"] for attempt in sent)


@pytest.mark.django_db(transaction=True)
def test_a_model_without_seed_gets_none(pipeline):
    listing = listings.create_listing("No seed", "seedream-4", three_photos()[:1])
    assert listing.seed is None and listing.jobs.get().seed is None


@pytest.mark.django_db(transaction=True)
def test_one_bad_photo_stores_nothing_and_names_each_bad_file(pipeline):
    before = originals()
    photos = three_photos()
    photos[1] = listings.Photo(upload(b"not an image", name="notes.txt", content_type="text/plain"))
    photos.append(listings.Photo(upload(b"GIF89a nope", name="x.gif", content_type="image/gif")))
    with pytest.raises(JobInputError) as caught:
        listings.create_listing("Broken", "flux-kontext-pro", photos)
    assert [error["loc"] for error in caught.value.errors] == [["images", 1], ["images", 3]]
    assert not Listing.objects.exists() and not StagingJob.objects.exists()
    assert originals() == before  # the good photos' files were removed too


@pytest.mark.django_db(transaction=True)
def test_no_photos_or_unknown_model_is_refused(pipeline):
    with pytest.raises(JobInputError) as no_photos:
        listings.create_listing("Empty", "flux-kontext-pro", [])
    assert no_photos.value.errors[0]["loc"] == ["images"]
    with pytest.raises(JobInputError) as unknown:
        listings.create_listing("Bad", "dall-e", three_photos())
    assert unknown.value.errors[0]["loc"] == ["model"]
    assert not Listing.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_reprocess_all_with_another_style_and_model(pipeline):
    listing = staged_listing()
    result = listings.reprocess_all(listing.pk, style="industrial", model="seedream-4")
    assert len(result.queued) == 3 and not result.skipped
    listing.refresh_from_db()
    assert (listing.style, listing.model_slug, listing.seed) == ("industrial", "seedream-4", None)
    for job in listing.jobs.all():
        assert drive(job) == "succeeded"
        latest = job.attempts.order_by("-number").first()
        assert latest.number == 2 and "industrial" in latest.input["prompt"] and "image_input" in latest.input
        assert (job.model_slug, job.style) == ("seedream-4", "industrial")


@pytest.mark.django_db(transaction=True)
def test_reprocess_all_skips_a_running_photo_and_leaves_it_unchanged(pipeline):
    listing = staged_listing()
    busy = listing.jobs.order_by("pk").first()
    Attempt.objects.create(job=busy, number=2)  # queued: still in progress
    result = listings.reprocess_all(listing.pk, style="boho")
    assert list(result.skipped) == [busy.pk] and len(result.queued) == 2
    busy.refresh_from_db()
    assert busy.style == "scandinavian"


@pytest.mark.django_db(transaction=True)
def test_stage_all_retries_only_photos_without_output(pipeline):
    listing = staged_listing()
    failed = listing.jobs.order_by("pk").last()
    Attempt.objects.filter(job=failed).delete()
    Attempt.objects.create(job=failed, number=1, state=Attempt.State.FAILED, error="E005")
    result = listings.stage_all(listing.pk)
    assert len(result.queued) == 1
    assert drive(failed) == "succeeded"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("labelled", [False, True])
def test_export_puts_each_staged_photo_beside_its_original(pipeline, labelled):
    listing = staged_listing()
    data = b"".join(listings.stream_export(listing, labelled=labelled))
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = archive.namelist()
    manifest = json.loads(archive.read("manifest.json"))
    assert "manifest.txt" in names
    assert manifest["label"] == ("default" if labelled else "none") and manifest["name"] == "12 Elm St"
    assert len(manifest["photos"]) == 3
    for photo, job in zip(manifest["photos"], listing.jobs.order_by("pk"), strict=True):
        assert archive.read(photo["original"]) == job.photo.open("rb").read()
        (staged,) = photo["staged"]
        assert staged["model"] == "flux-kontext-pro" and staged["labelled"] is labelled
        assert {"config_version", "staged_at", "attempt"} <= staged.keys()
        assert staged["file"].rsplit("/", 1)[0] == photo["original"].rsplit("/", 1)[0]  # side by side
        clean = job.attempts.get().images.get().file.open("rb").read()
        exported = archive.read(staged["file"])
        assert (exported != clean) is labelled
        assert Image.open(io.BytesIO(exported)).size == Image.open(io.BytesIO(clean)).size
        assert ("labelled" in staged["file"]) is labelled
    text = archive.read("manifest.txt").decode()
    assert "virtually staged by flux-kontext-pro" in text and text.count("original (") == 3


@pytest.mark.django_db
def test_only_the_cost_still_estimated_counts_as_confirmed() -> None:
    estimate = listings.estimate_cost("flux-kontext-pro", 3)
    assert listings.check_confirmed_cost("flux-kontext-pro", 3, estimate).confirmed
    assert listings.check_confirmed_cost("flux-kontext-pro", 3, str(estimate)).confirmed
    for shown in (None, "", "free", "sNaN", estimate / 3):
        check = listings.check_confirmed_cost("flux-kontext-pro", 3, shown)
        assert not check.confirmed and check.estimate == estimate
