"""Derivatives of stored outputs: made at collection from the clean file, idempotent, deleted with their image."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from PIL import Image

from staging import collect, derivatives, selectors
from staging.models import Attempt, Derivative, DerivativeKind, StagedImage, StagingJob
from tests.fixtures.photos import image_bytes
from tests.fixtures.pipeline import attempts, drive

THUMB = DerivativeKind.THUMBNAIL


def stored_names(job: StagingJob) -> set[str]:
    """Every file the storage holds under the job's outputs folder."""
    folder = Path(default_storage.path(f"staging/outputs/{job.uid}"))
    return {str(path.relative_to(default_storage.location)) for path in folder.rglob("*") if path.is_file()}


def referenced_names(job: StagingJob) -> set[str]:
    images = StagedImage.objects.filter(attempt__job=job)
    made = Derivative.objects.filter(image__attempt__job=job)
    return {image.file.name for image in images} | {derivative.file.name for derivative in made}


@pytest.fixture
def output(db) -> StagedImage:
    """One stored 300x200 PNG output of a succeeded attempt, written straight to the database and storage."""
    job = StagingJob(model_slug="flux-kontext-pro")
    job.photo.save("original.jpg", ContentFile(image_bytes()), save=False)
    job.save()
    attempt = Attempt.objects.create(job=job, number=1, state=Attempt.State.SUCCEEDED)
    data = image_bytes("PNG", size=(300, 200))
    image = StagedImage(
        attempt=attempt,
        index=0,
        source_url="https://replicate.delivery/x/output.png",
        content_type="image/png",
        size=len(data),
        checksum=hashlib.sha256(data).hexdigest(),
        width=300,
        height=200,
    )
    image.file.save("output-0.png", ContentFile(data), save=False)
    image.save()
    return image


# --- made at collection ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_collecting_an_output_makes_its_thumbnail_from_the_clean_file(pipeline, make_job, settings):
    settings.STAGING_THUMBNAIL_SIZE = 40
    job = make_job("seedream-4")
    assert drive(job) == "succeeded"
    outputs = list(selectors.outputs_of(job))
    assert outputs
    for image in outputs:
        data = image.file.read()
        assert hashlib.sha256(data).hexdigest() == image.checksum and len(data) == image.size  # untouched
        with Image.open(io.BytesIO(data)) as clean:
            assert clean.size == (image.width, image.height)
        [thumbnail] = image.derivatives.all()
        assert thumbnail.kind == THUMB and thumbnail.content_type == "image/jpeg"
        thumb_data = thumbnail.file.read()
        assert thumbnail.size == len(thumb_data)
        with Image.open(io.BytesIO(thumb_data)) as decoded:
            decoded.load()
            assert decoded.format == "JPEG"
            assert decoded.size == (thumbnail.width, thumbnail.height)
            assert max(decoded.size) == 40 < max(image.width, image.height)
            ratio = image.width / image.height
            assert abs(decoded.width / decoded.height - ratio) < 0.1
    assert stored_names(job) == referenced_names(job)


@pytest.mark.django_db(transaction=True)
def test_a_collect_that_loses_the_race_leaves_no_file_behind(pipeline, make_job, monkeypatch):
    """A second collect runs while the first is downloading: each output and thumbnail is stored once."""
    real_download = collect.download
    raced = []

    def download_while_another_collect_runs(url: str) -> bytes:
        if not raced:
            raced.append(url)
            attempt = Attempt.objects.get(state=Attempt.State.COLLECTING)
            assert collect.collect_outputs(attempt.pk).state == "succeeded"
        return real_download(url)

    monkeypatch.setattr(collect, "download", download_while_another_collect_runs)
    job = make_job("qwen-image-edit")
    assert drive(job) == "succeeded"
    assert raced
    [attempt] = attempts(job)
    assert attempt.images.count() == len(attempt.output) >= 1
    assert Derivative.objects.filter(image__attempt=attempt, kind=THUMB).count() == attempt.images.count()
    assert stored_names(job) == referenced_names(job)  # the loser's output file was deleted


# --- making ------------------------------------------------------------------------------------


def test_making_a_derivative_twice_returns_one_row(output):
    first = derivatives.make_derivative(output, THUMB)
    again = derivatives.make_derivative(output, THUMB)
    assert again.pk == first.pk
    assert output.derivatives.count() == 1
    assert derivatives.get_derivative(output, THUMB).file.url == first.file.url


def test_a_derivative_is_made_from_the_stored_file_which_stays_unchanged(output, settings):
    settings.STAGING_THUMBNAIL_SIZE = 60
    before = output.file.read()
    output.file.close()
    thumbnail = derivatives.make_derivative(output, THUMB)
    assert (thumbnail.width, thumbnail.height) == (60, 40)
    with Image.open(thumbnail.file.path) as decoded:
        assert (decoded.format, decoded.size) == ("JPEG", (60, 40))
    assert thumbnail.size == Path(thumbnail.file.path).stat().st_size
    assert thumbnail.file.name != output.file.name
    after = Path(output.file.path).read_bytes()
    assert after == before and hashlib.sha256(after).hexdigest() == output.checksum


def test_a_concurrent_maker_wins_and_the_loser_deletes_its_file(output, monkeypatch):
    """The other maker stores the same kind between our check and our insert: we return theirs."""
    real_maker = derivatives.MAKERS[THUMB]
    theirs: list[Derivative] = []
    calls = []

    def maker_racing_another(image, source):
        calls.append(image.pk)
        if len(calls) == 1:  # ours: the other maker runs to the end before we insert
            theirs.append(derivatives.make_derivative(StagedImage.objects.get(pk=image.pk), THUMB))
        return real_maker(image, source)

    monkeypatch.setitem(derivatives.MAKERS, THUMB, maker_racing_another)
    ours = derivatives.make_derivative(output, THUMB)
    assert len(calls) == 2
    assert ours.pk == theirs[0].pk
    assert output.derivatives.count() == 1
    assert stored_names(output.attempt.job) == referenced_names(output.attempt.job)


def test_an_image_without_derivatives_has_no_urls(output):
    assert derivatives.get_derivative(output, THUMB) is None
    assert derivatives.by_kind(output) == {}


def test_outputs_of_reads_every_derivative_in_one_query(output, django_assert_num_queries):
    derivatives.make_derivative(output, THUMB)
    with django_assert_num_queries(3):  # the attempt, the outputs, their derivatives
        urls = [derivatives.get_derivative(image, THUMB).file.url for image in selectors.outputs_of(output.attempt.job)]
    assert urls == [output.derivatives.get().file.url]


# --- deleting ----------------------------------------------------------------------------------


def test_deleting_an_image_removes_its_files_and_its_derivatives(output, django_capture_on_commit_callbacks):
    thumbnail = derivatives.make_derivative(output, THUMB)
    paths = [Path(output.file.path), Path(thumbnail.file.path)]
    assert all(path.exists() for path in paths)
    with django_capture_on_commit_callbacks(execute=True):
        derivatives.delete_staged_image(output)
        assert all(path.exists() for path in paths)  # files go only once the delete is committed
    assert not any(path.exists() for path in paths)
    assert not StagedImage.objects.filter(pk=thumbnail.image_id).exists()
    assert not Derivative.objects.filter(pk=thumbnail.pk).exists()


def test_deleting_an_image_never_saved_removes_its_file(output, django_capture_on_commit_callbacks):
    unsaved = StagedImage(attempt=output.attempt, index=1)
    unsaved.file.save("output-1.png", ContentFile(image_bytes("PNG")), save=False)
    path = Path(unsaved.file.path)
    with django_capture_on_commit_callbacks(execute=True):
        derivatives.delete_staged_image(unsaved)
    assert not path.exists()
    assert Path(output.file.path).exists()


# --- the data migration ------------------------------------------------------------------------

BEFORE = [("staging", "0002_attempt_config_source_choices")]


def _migrate(targets) -> object:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_old_thumbnails_into_derivatives_and_back():
    thumb_data = image_bytes("JPEG", size=(48, 32))
    thumb_name = default_storage.save("staging/outputs/legacy/a1/output-0-thumb.jpg", ContentFile(thumb_data))
    try:
        old = _migrate(BEFORE)
        job = old.get_model("staging", "StagingJob").objects.create(model_slug="qwen-image-edit", photo="p.jpg")
        attempt = old.get_model("staging", "Attempt").objects.create(job=job, number=1, token="legacy-token")
        OldImage = old.get_model("staging", "StagedImage")
        common = {"attempt": attempt, "source_url": "https://replicate.delivery/o.png", "content_type": "image/png"}
        common |= {"size": 1, "checksum": "0" * 64, "width": 96, "height": 64}
        with_thumb = OldImage.objects.create(index=0, file="o0.png", thumbnail=thumb_name, **common)
        without = OldImage.objects.create(index=1, file="o1.png", thumbnail="", **common)
        file_gone = OldImage.objects.create(index=2, file="o2.png", thumbnail="gone-thumb.jpg", **common)

        _migrate(_latest())
        moved = Derivative.objects.get(image_id=with_thumb.pk)
        assert (moved.kind, moved.file.name, moved.content_type) == (THUMB, thumb_name, "image/jpeg")
        assert (moved.width, moved.height, moved.size) == (48, 32, len(thumb_data))
        assert not Derivative.objects.filter(image_id=without.pk).exists()
        kept = Derivative.objects.get(image_id=file_gone.pk)  # the row is carried over even without its file
        assert kept.file.name == "gone-thumb.jpg" and kept.size == 0
        assert StagedImage.objects.get(pk=with_thumb.pk).file.name == "o0.png"

        back = _migrate(BEFORE)
        restored = dict(back.get_model("staging", "StagedImage").objects.values_list("index", "thumbnail"))
        assert restored == {0: thumb_name, 1: "", 2: "gone-thumb.jpg"}
    finally:
        _migrate(_latest())
        default_storage.delete(thumb_name)
