"""Writes about jobs: create one, retry it, reprocess it on another model, cancel it; and who may override
what in a job's config (`OverridePolicy`).

Every check runs before anything is stored, so a refused request leaves no photo or row behind; the new
attempt is queued once the transaction commits and submitted by `attempts.submit_attempt`
(docs/architecture.md#a-jobs-path).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE
from models_config.models import CHANGE_CONFIG_PERMISSION
from models_config.registry import UnknownModelError, get_spec
from models_config.schemas import (
    PromptError,
    StagingConfig,
    check_prompt,
    describe_errors,
    field_errors,
    per_job_keys,
    render_prompt,
    restricted_keys,
)

from .. import gateway, images, selectors, storage, transitions
from ..errors import JobBusyError, JobInputError, OverrideNotAllowed
from ..models import Attempt, Listing, StagingJob
from ..queue import enqueue


@dataclass(frozen=True)
class OverridePolicy:
    """Which keys of a job's config override the person asking may set (docs/architecture.md#who-may-override-what).

    The prompt template and the safety settings decide what a model may be made to draw, so only
    who may change the model's config sets them for one job; anyone who may create a job may set
    the keys the schema marks per job (`schemas.OverrideScope`).
    """

    may_change_config: bool

    @classmethod
    def of(cls, user: AbstractBaseUser) -> OverridePolicy:
        return cls(may_change_config=user.has_perm(CHANGE_CONFIG_PERMISSION))

    def check(self, slug: str, override: Mapping[str, Any] | None) -> None:
        """Raise `OverrideNotAllowed` naming each key of `override` this policy may not set."""
        if self.may_change_config or not override:
            return
        schema = get_spec(slug).config_schema
        refused = restricted_keys(schema, override)
        if refused:
            raise OverrideNotAllowed(slug, refused, per_job_keys(schema))


# The `stage` and `reprocess` commands: whoever runs manage.py runs the service and may set any key.
OPERATOR = OverridePolicy(may_change_config=True)
# The default for a caller that names nobody: only the per-job keys.
PER_JOB_ONLY = OverridePolicy(may_change_config=False)


def _check_override(slug: str, override: Mapping[str, Any], version_id: int | None = None) -> StagingConfig:
    """The config `override` gives with today's active config (or the pinned `version_id`); refused
    (JobInputError per field) if invalid."""
    try:
        return selectors.resolve_config(slug, override, version_id)[1]
    except ValidationError as exc:
        message = f"Invalid config override for {slug}: {describe_errors(exc.errors())}"
        raise JobInputError(message, field_errors(exc, ("config",))) from None


def _check_prompt(
    config: StagingConfig, override: Mapping[str, Any] | None, room_type: str, style: str, instructions: str
) -> None:
    """The job's own prompt must be sendable: not blank, within STAGING_MAX_PROMPT_CHARS.

    A template saved now always fits (it is checked with the longest job fields); this catches a
    stored one saved under a larger cap, before anything is stored rather than in the worker.
    """
    try:
        prompt = render_prompt(config.prompt_template, room_type=room_type, style=style, instructions=instructions)
        check_prompt(prompt, settings.STAGING_MAX_PROMPT_CHARS)
    except PromptError as exc:
        loc = ["config", "prompt_template"] if override and "prompt_template" in override else ["instructions"]
        message = f"The prompt for this job cannot be sent: {exc}"
        raise JobInputError(message, [{"loc": loc, "msg": str(exc), "type": "value_error"}]) from None


# --- Jobs ---------------------------------------------------------------------------------------


def create_job(
    image_file: IO[bytes],
    model: str,
    room_type: str = DEFAULT_ROOM_TYPE,
    style: str = DEFAULT_STYLE,
    instructions: str = "",
    seed: int | None = None,
    config_override: Mapping[str, Any] | None = None,
    policy: OverridePolicy = PER_JOB_ONLY,
    listing: Listing | None = None,
    is_try: bool = False,
    created_by: AbstractBaseUser | None = None,
) -> StagingJob:
    """Validate everything, store the photo, create attempt 1 and queue its submission.

    `listing` only files the job under it; `staging.listings` decides what a listing's photos share.
    `is_try` marks a playground run of a draft config (docs/architecture.md#the-playground).
    `created_by` is who asked (the API's user; None from a command): it decides who may see the job
    (`selectors.visible_jobs`).

    Raises `ImageRejected` (bad photo), `JobInputError` (unknown model, invalid override, a prompt
    that cannot be sent; `.errors` has a `{loc, msg, type}` item per refused field), `OverrideNotAllowed`
    (the override sets a key `policy` does not allow) or `ReplicateNotConfigured`; in every case nothing
    is stored.
    """
    gateway.require_configured()
    try:
        spec = get_spec(model)
    except UnknownModelError as exc:
        raise JobInputError.about("model", str(exc)) from None
    if config_override is not None and not isinstance(config_override, Mapping):
        raise JobInputError.about("config", "The config override must be a JSON object.", "dict_type")
    override = dict(config_override) if config_override else None
    config = _check_override(spec.slug, override) if override else selectors.resolve_config(spec.slug, None)[1]
    policy.check(spec.slug, override)
    room_type, style, instructions = room_type or DEFAULT_ROOM_TYPE, style or DEFAULT_STYLE, instructions or ""
    _check_prompt(config, override, room_type, style, instructions)
    checked = images.check_upload(image_file)

    job = StagingJob(
        model_slug=model,
        room_type=room_type,
        style=style,
        instructions=instructions,
        seed=seed,
        config_override=override,
        listing=listing,
        created_by=created_by,
        photo_width=checked.width,
        photo_height=checked.height,
        is_try=is_try,
    )
    try:
        with transaction.atomic():
            job.photo.save(f"original.{checked.extension}", ContentFile(checked.content), save=False)
            if checked.upright is not None:
                job.input_photo.save(f"input.{checked.extension}", ContentFile(checked.upright), save=False)
            job.save()
            attempt = Attempt.objects.create(job=job, number=1)
            enqueue("submit_attempt", attempt.pk)
    except Exception:
        storage.delete_files(job.photo, job.input_photo)
        raise
    return job


def retry_job(
    job_id: int,
    config_override: Mapping[str, Any] | None = None,
    policy: OverridePolicy = PER_JOB_ONLY,
    *,
    version_id: int | None = None,
    expected_latest: int | None = None,
) -> Attempt:
    """Add a new attempt to a finished job (failed, canceled, or succeeded to reprocess) and queue it.

    `config_override`, when given, replaces the job's stored override for this and later attempts;
    it is checked as `create_job` checks one (`OverrideNotAllowed` for a key `policy` does not allow).
    `version_id` pins a stored config version for this attempt (and its automatic retries) instead of
    the active one. Raises `JobBusyError` while the job still has an attempt in progress, and when
    `expected_latest` (the latest attempt number the caller saw) is no longer the latest: under the row
    lock, so two runs at once give a job one new attempt (docs/architecture.md#reprocessing).
    """
    with transaction.atomic():
        job = _lock_job(job_id)
        latest = job.attempts.order_by("-number").first()
        if latest is not None and not latest.is_terminal:
            raise JobBusyError(f"Job {job_id} is still {latest.state}; cancel it or wait before retrying.")
        if expected_latest is not None and latest is not None and latest.number != expected_latest:
            raise JobBusyError(f"Job {job_id} was reprocessed meanwhile (attempt {latest.number}); nothing added.")
        if config_override is not None or version_id is not None:
            layer = job.config_override if config_override is None else config_override
            config = _check_override(job.model_slug, layer or {}, version_id)
            policy.check(job.model_slug, config_override)
            _check_prompt(config, layer, job.room_type, job.style, job.instructions)
        if config_override is not None:
            job.config_override = dict(config_override) or None
            job.save(update_fields=["config_override", "updated_at"])
        number = (latest.number if latest else 0) + 1
        attempt = Attempt.objects.create(job=job, number=number, pinned_version_id=version_id)
        enqueue("submit_attempt", attempt.pk)
    return attempt


def _lock_job(job_id: int) -> StagingJob:
    """The job, locked until the transaction ends, on every database: SQLite ignores `SELECT … FOR UPDATE`,
    but an UPDATE takes its write lock at once, so two runs cannot both read "no new attempt yet"."""
    StagingJob.objects.filter(pk=job_id).update(updated_at=timezone.now())
    return StagingJob.objects.select_for_update().get(pk=job_id)


def unsaved_copy(job: StagingJob, model: str, config_override: Mapping[str, Any] | None) -> StagingJob:
    """`job` as a new job of `model` (same photo and request, `config_override` for the new model), unsaved.

    The source's own override is not carried over: it was written for another model's schema.
    """
    return StagingJob(
        model_slug=model,
        room_type=job.room_type,
        style=job.style,
        instructions=job.instructions,
        seed=job.seed,
        config_override=dict(config_override) if config_override else None,
        photo=job.photo,
        input_photo=job.input_photo,
        photo_width=job.photo_width,
        photo_height=job.photo_height,
        created_by_id=job.created_by_id,
        reprocessed_from=job,
    )


def reprocess_on_model(
    job_id: int,
    model: str,
    config_override: Mapping[str, Any] | None = None,
    policy: OverridePolicy = PER_JOB_ONLY,
    *,
    version_id: int | None = None,
    expected_copy: int | None = None,
) -> Attempt:
    """Stage `job`'s photo again with another model: a new job (`reprocessed_from` the source) with its own
    copy of the photo, and its attempt 1 queued. Returns that attempt.

    A new job, not an attempt of the old one, keeps each job's status derived from attempts of one model
    and the per-model metrics right (docs/architecture.md#reprocessing). `expected_copy` is the newest copy
    of the source onto `model` the caller saw (0: none); another one made meanwhile raises `JobBusyError`.
    """
    try:
        spec = get_spec(model)
    except UnknownModelError as exc:
        raise JobInputError.about("model", str(exc)) from None
    override = dict(config_override) if config_override else None
    config = _check_override(spec.slug, override or {}, version_id)
    policy.check(spec.slug, override)
    with transaction.atomic():
        source = _lock_job(job_id)
        newest = source.copies.filter(model_slug=spec.slug).order_by("-pk").values_list("pk", flat=True).first()
        if expected_copy is not None and (newest or 0) != expected_copy:
            raise JobBusyError(
                f"Job {job_id} was reprocessed onto {spec.slug} meanwhile (job {newest}); nothing added."
            )
        _check_prompt(config, override, source.room_type, source.style, source.instructions)
        job = unsaved_copy(source, spec.slug, override)
        job.photo, job.input_photo = None, None  # its own copies below: a clean-up must never delete the source's
        try:
            for name in ("photo", "input_photo"):
                original = getattr(source, name)
                if original:
                    with original.open("rb") as handle:
                        getattr(job, name).save(
                            original.name.rsplit("/", 1)[-1], ContentFile(handle.read()), save=False
                        )
            job.save()
            attempt = Attempt.objects.create(job=job, number=1, pinned_version_id=version_id)
            enqueue("submit_attempt", attempt.pk)
        except Exception:
            storage.delete_files(job.photo, job.input_photo)
            raise
    return attempt


def cancel_job(job_id: int, reason: str = "Canceled on request.") -> Attempt | None:
    """Cancel the job's unfinished attempt (also at Replicate). Returns it, or None if nothing ran."""
    attempt = Attempt.objects.filter(job_id=job_id).order_by("-number").first()
    if attempt is None or attempt.is_terminal:
        return None
    won = transitions.cancel(attempt.pk, reason)
    attempt.refresh_from_db()
    if won and attempt.prediction_id:
        gateway.cancel_quietly(attempt.prediction_id)
    return attempt
