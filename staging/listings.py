"""Listings: the photos of one property staged alike, restaged together, exported together.

A listing is its jobs (docs/architecture.md#listings): every photo is a `StagingJob` made by
`services.create_job`, so the checks, storage and never-pay-twice rules of a single job hold for each.
What the photos share (style, model, seed where the model takes one) is decided here. Permissions are
the jobs' own: whoever may add, view or change jobs may do the same with the listings holding them.
"""

from __future__ import annotations

import io
import json
import posixpath
import random
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE
from models_config.registry import UnknownModelError, get_spec

from . import derivatives, selectors, services, storage
from .errors import ImageRejected, JobBusyError, JobInputError
from .models import DerivativeKind, Listing, StagedImage, StagingJob

DRAWN_SEED_MAX = 2**31 - 1  # a drawn seed fits every seeded model's 32-bit seed


@dataclass(frozen=True)
class Photo:
    """One photo of a listing as uploaded, with its own room type."""

    file: IO[bytes]
    room_type: str = DEFAULT_ROOM_TYPE


def _spec(model: str):
    try:
        return get_spec(model)
    except UnknownModelError as exc:
        raise JobInputError.about("model", str(exc)) from None


def takes_seed(model: str) -> bool:
    """Whether the model's input has a seed (the registry's input schema says; Seedream has none)."""
    return "seed" in _spec(model).input_schema.model_fields


def shared_seed(model: str) -> int | None:
    """One seed for all photos of a listing, so that they are furnished alike; None for a model without one."""
    return random.randint(0, DRAWN_SEED_MAX) if takes_seed(model) else None


def estimate_cost(model: str, photos: int) -> Decimal:
    """What staging `photos` photos with `model`'s active config costs at most, before anything is sent."""
    spec = _spec(model)
    return spec.estimate_cost(selectors.resolve_config(spec.slug, None)[1]) * photos


@dataclass(frozen=True)
class CostCheck:
    estimate: Decimal
    confirmed: bool  # the cost the person confirmed is still the estimate


def check_confirmed_cost(model: str, photos: int, shown: Decimal | str | None) -> CostCheck:
    """Whether the cost a person confirmed (`shown`, as the page sent it back) is still what staging `photos`
    photos with `model` costs: nothing paid starts on a cost nobody saw, e.g. after a config change or with
    other photos chosen since the page showed it (the workbench's upload and "reprocess all")."""
    estimate = estimate_cost(model, photos)
    try:
        confirmed = shown is not None and shown != "" and Decimal(shown) == estimate
    except InvalidOperation:
        confirmed = False
    return CostCheck(estimate, confirmed)


def get_listing(listing_id: int) -> Listing:
    """The listing, or `JobInputError` on the `listing` field (a job or request naming one that does not exist)."""
    listing = Listing.objects.filter(pk=listing_id).first()
    if listing is None:
        raise JobInputError.about("listing", f"No listing {listing_id}.", "missing")
    return listing


def jobs_of(listing: Listing) -> QuerySet[StagingJob]:
    return listing.jobs.with_status().order_by("pk")


# --- Creating -----------------------------------------------------------------------------------


def create_listing(
    name: str,
    model: str,
    photos: Sequence[Photo],
    *,
    style: str = DEFAULT_STYLE,
    instructions: str = "",
    seed: int | None = None,
    config_override: Mapping[str, Any] | None = None,
    created_by: AbstractBaseUser | None = None,
    policy: services.OverridePolicy = services.PER_JOB_ONLY,
) -> Listing:
    """The listing and one job per photo, in one transaction: all are stored, or nothing is.

    Every photo is checked (`ImageRejected` of each becomes a `JobInputError` item at `["images", i]`),
    so one answer names every bad file. A model with a seed gets one seed for all photos, drawn here when
    none is given, so that the photos of one property are furnished alike.
    """
    if not photos:
        raise JobInputError.about("images", "Attach at least one photo (`images`).", "missing")
    spec = _spec(model)
    if seed is None:
        seed = shared_seed(spec.slug)
    with transaction.atomic():
        listing = Listing.objects.create(
            name=name, style=style or DEFAULT_STYLE, model_slug=spec.slug, seed=seed, created_by=created_by
        )
        add_photos(
            listing,
            photos,
            instructions=instructions,
            config_override=config_override,
            policy=policy,
            created_by=created_by,
        )
    return listing


def add_photos(
    listing: Listing,
    photos: Sequence[Photo],
    *,
    instructions: str = "",
    config_override: Mapping[str, Any] | None = None,
    policy: services.OverridePolicy = services.PER_JOB_ONLY,
    created_by: AbstractBaseUser | None = None,
) -> list[StagingJob]:
    """One job per photo, in the listing's model, style and seed; all are stored, or nothing is (files too).

    `created_by` (who uploads) is recorded on every job: it decides who may see the job
    (docs/architecture.md#who-sees-a-job)."""
    if not photos:
        raise JobInputError.about("images", "Attach at least one photo (`images`).", "missing")
    made: list[StagingJob] = []
    errors: list[dict[str, Any]] = []
    try:
        with transaction.atomic():
            for index, photo in enumerate(photos):
                try:
                    job = services.create_job(
                        photo.file,
                        listing.model_slug,
                        room_type=photo.room_type,
                        style=listing.style,
                        instructions=instructions,
                        seed=listing.seed,
                        config_override=config_override,
                        policy=policy,
                        listing=listing,
                        created_by=created_by,
                    )
                except ImageRejected as exc:
                    errors.append({"loc": ["images", index], "msg": str(exc), "type": "value_error"})
                    continue
                made.append(job)
            if errors:
                raise JobInputError(f"{len(errors)} of {len(photos)} photos cannot be used.", errors)
    except Exception:
        storage.delete_files(*(file for job in made for file in (job.photo, job.input_photo)))
        raise
    return made


def fields_for_job(listing_id: int, model: str, style: str | None, seed: int | None) -> tuple[Listing, str, int | None]:
    """A job added to a listing (`POST /jobs` with `listing`): its model must be the listing's, and it takes
    the listing's style and seed unless it names its own (an explicit different style is refused)."""
    listing = get_listing(listing_id)
    if model != listing.model_slug:
        raise JobInputError.about("model", f"Listing {listing.pk} stages with {listing.model_slug}, not {model}.")
    if style is not None and style != listing.style:
        raise JobInputError.about("style", f"Listing {listing.pk} stages every photo in the style {listing.style!r}.")
    return listing, listing.style, listing.seed if seed is None else seed


# --- Staging again --------------------------------------------------------------------------------


@dataclass
class Restaged:
    """What a listing-wide action did: attempts queued, and jobs skipped with the reason."""

    queued: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def stage_all(listing_id: int, policy: services.OverridePolicy = services.PER_JOB_ONLY) -> Restaged:
    """A new attempt for each photo without a staged output that is not running (failed or canceled ones)."""
    listing = Listing.objects.get(pk=listing_id)
    result = Restaged()
    for job in jobs_of(listing):
        if job.derived_status in ("failed", "canceled"):
            _retry(job.pk, None, policy, result)
        elif job.derived_status != "succeeded":
            result.skipped[job.pk] = f"it is {job.derived_status}"
    return result


def reprocess_all(
    listing_id: int,
    *,
    style: str | None = None,
    model: str | None = None,
    policy: services.OverridePolicy = services.PER_JOB_ONLY,
) -> Restaged:
    """A new paid attempt for every finished photo, with the listing's new style and/or model if given.

    A new model clears the jobs' config overrides (they were written for the old model's schema) and
    takes the listing's seed only if it has one. Jobs still running are skipped, left as they were.
    """
    with transaction.atomic():
        listing = Listing.objects.select_for_update().get(pk=listing_id)
        if model:
            listing.model_slug = _spec(model).slug
            if listing.seed is None or not takes_seed(model):
                listing.seed = shared_seed(model)
        listing.style = style or listing.style
        listing.save()
    result = Restaged()
    for job in jobs_of(listing):
        model_changed = job.model_slug != listing.model_slug
        changes = {"model_slug": listing.model_slug, "style": listing.style, "seed": listing.seed}
        if not model_changed and job.style == listing.style:
            changes = {}
        # `{}` replaces an old model's override and has the new prompt checked.
        _retry(job.pk, {} if model_changed else None, policy, result, changes)
    return result


def _retry(
    job_id: int,
    override: Mapping[str, Any] | None,
    policy: services.OverridePolicy,
    result: Restaged,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """`services.retry_job` after applying `changes` to the job; a busy job keeps its fields and is skipped."""
    try:
        with transaction.atomic():
            if changes:
                StagingJob.objects.filter(pk=job_id).update(**changes, updated_at=timezone.now())
            attempt = services.retry_job(job_id, override, policy=policy)
    except JobBusyError as exc:
        result.skipped[job_id] = str(exc)
        return
    result.queued.append(attempt.pk)


# --- Export ----------------------------------------------------------------------------------------


class _Chunks(io.RawIOBase):
    """A write-only sink that `zipfile` streams into; `drain` hands out what was written since last time."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


@dataclass(frozen=True)
class ExportFile:
    name: str
    file: FieldFile


def _extension(name: str) -> str:
    return posixpath.splitext(name)[1].lower() or ".img"


def export_plan(listing: Listing, *, labelled: bool) -> tuple[list[ExportFile], dict[str, Any]]:
    """The files of the export (each staged photo beside its original) and its manifest.

    Labelled copies are made now from the clean outputs (`derivatives.make_derivative`), never stored over them.
    """
    files: list[ExportFile] = []
    photos: list[dict[str, Any]] = []
    for number, job in enumerate(jobs_of(listing), start=1):
        folder = f"{number:02d}-job{job.pk}"
        original = f"{folder}/original{_extension(job.photo.name)}"
        files.append(ExportFile(original, job.photo))
        staged: list[dict[str, Any]] = []
        for image in selectors.outputs_of(job).select_related("attempt__config_version"):
            file = _staged_file(image, labelled)
            name = f"{folder}/staged-{image.index + 1}{'-labelled' if labelled else ''}{_extension(file.name)}"
            files.append(ExportFile(name, file))
            attempt = image.attempt
            staged.append(
                {
                    "file": name,
                    "labelled": labelled,
                    "model": job.model_slug,
                    "config_version": attempt.config_version.number if attempt.config_version else None,
                    "attempt": attempt.number,
                    "staged_at": (attempt.finished_at or image.created_at).isoformat(),
                }
            )
        photos.append(
            {
                "job": job.pk,
                "room_type": job.room_type,
                "style": job.style,
                "status": job.derived_status,
                "original": original,
                "staged": staged,
            }
        )
    manifest = {
        "listing": listing.pk,
        "name": listing.name,
        "exported_at": timezone.now().isoformat(),
        "label": "default" if labelled else "none",
        "note": "Staged photos were altered by an AI image-editing model (virtual staging); originals are unaltered.",
        "photos": photos,
    }
    return files, manifest


def _staged_file(image: StagedImage, labelled: bool) -> FieldFile:
    return derivatives.make_derivative(image, DerivativeKind.LABELLED).file if labelled else image.file


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """The manifest for people: one line per staged photo, what altered it and when."""
    lines = [
        f"Listing {manifest['listing']}: {manifest['name']}",
        f"Exported {manifest['exported_at']}; disclosure label on staged photos: {manifest['label']}",
        manifest["note"],
        "",
    ]
    for photo in manifest["photos"]:
        lines.append(f"{photo['original']}  original ({photo['room_type']}), unaltered")
        for staged in photo["staged"]:
            version = staged["config_version"] if staged["config_version"] is not None else "defaults"
            lines.append(
                f"{staged['file']}  virtually staged by {staged['model']} (config version {version}) "
                f"at {staged['staged_at']}"
            )
        if not photo["staged"]:
            lines.append(f"  (not staged: {photo['status']})")
    return "\n".join(lines) + "\n"


def stream_export(listing: Listing, *, labelled: bool) -> Iterator[bytes]:
    """The export as a zip, yielded piece by piece: a file is read in chunks, never whole, into memory."""
    files, manifest = export_plan(listing, labelled=labelled)
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        archive.writestr("manifest.txt", manifest_text(manifest))
        yield sink.drain()
        for entry in files:
            with entry.file.open("rb") as source, archive.open(entry.name, "w") as target:
                for chunk in iter(lambda: source.read(256 * 1024), b""):
                    target.write(chunk)
                    yield sink.drain()
    yield sink.drain()
