"""Writes of the staging pipeline: jobs (create, retry, cancel), submitting an attempt, and taking in
news about a prediction (its create's answer, a webhook, a poll, a reconcile).

State changes themselves are the compare-and-set transitions of `transitions`; this module decides
which one to call and does what a transition may not: calling Replicate (create, and cancel a
prediction nobody will use). An attempt creates at most one prediction: only the winner of
`transitions.claim` calls create, after `transitions.record_input` confirmed the claim still holds; a
create whose answer was lost is reconciled (`reconcile`) before anything new is created
(docs/architecture.md#never-pay-twice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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

from . import gateway, images, pacer, selectors, spend, storage, transitions
from .errors import (
    PERMANENT,
    GatewayError,
    JobBusyError,
    JobInputError,
    OverrideNotAllowed,
    ReplicateNotConfigured,
    clamp_wait,
)
from .gateway import Prediction
from .models import Arm, Attempt, ConfigSource, Listing, StagingJob
from .queue import enqueue, enqueue_at
from .transitions import Adoption

logger = logging.getLogger(__name__)

S = Attempt.State


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


# --- Submitting ----------------------------------------------------------------------------------


def submit_attempt(attempt_id: int) -> None:
    """Claim the attempt, build its input, create its one prediction and save the id at once.

    Safe to run any number of times, concurrently: losers of the claim return without a call. The create
    waits for a slot of the shared pacer (STAGING_CREATE_RATE); a create Replicate refused, or a slot too
    far off to sleep for, puts the same attempt back in the queue for later
    (docs/architecture.md#refused-creates).
    """
    attempt = Attempt.objects.select_related("job").filter(pk=attempt_id, state=S.QUEUED).first()
    if attempt is None:
        return  # already claimed, held or ended: nothing to do
    job = attempt.job
    claimed_at = timezone.now()
    # The claim reserves the estimate against the spend caps, or holds the attempt (docs/architecture.md#spend-caps).
    budget = transitions.Budget(job.model_slug, spend.estimate_for(job))
    if not transitions.claim(attempt_id, now=claimed_at, budget=budget):
        return
    # Then the slot: an attempt put off for one is back in the queue after a few queries (its reservation
    # released), and a first try (no `next_retry_at` yet) lines up behind those already waiting
    # (docs/architecture.md#pacing-creates).
    slot = pacer.take_create_slot(behind_line=attempt.next_retry_at is None)
    if not slot.granted:
        reason = f"Waiting for a create slot (STAGING_CREATE_RATE={settings.STAGING_CREATE_RATE})."
        transitions.refused(attempt_id, reason, retry_at=slot.retry_at, claimed_at=claimed_at)
        return
    spec = get_spec(job.model_slug)
    try:
        image_url = storage.image_url_for_replicate(job.sent_photo, storage.content_type_of(job.sent_photo.name))
        resolved = selectors.resolve_input(job, image_url, version_id=attempt.pinned_version_id)
        check_prompt(resolved.input["prompt"], settings.STAGING_MAX_PROMPT_CHARS)
    except ValidationError as exc:  # e.g. an override stored before today's rules
        message = (
            f"The configuration for {job.model_slug} is invalid: {describe_errors(exc.errors())}. "
            "Reprocess the job with a corrected config override (or {} to use the active config)."
        )
        transitions.fail(attempt_id, message, PERMANENT)
        return
    except PromptError as exc:  # a template saved under a larger STAGING_MAX_PROMPT_CHARS
        transitions.fail(attempt_id, f"The prompt for this job cannot be sent: {exc}", PERMANENT)
        return
    except ReplicateNotConfigured as exc:
        transitions.fail(attempt_id, str(exc), PERMANENT)
        return
    except GatewayError as exc:  # the Files API upload
        _not_created(attempt_id, exc, claimed_at)
        return

    pacer.wait_for(slot)

    source = ConfigSource.OVERRIDE if job.config_override else ConfigSource(resolved.active.source)
    recorded = transitions.record_input(
        attempt_id,
        version_id=resolved.active.version_id,
        config=resolved.config.model_dump(mode="json"),
        source=source,
        model_input=resolved.input,
        arm=Arm(resolved.active.arm),
    )
    if not recorded:
        logger.info("Attempt %s ended before its create; nothing sent", attempt_id)
        return
    webhook = gateway.webhook_url_for(attempt)
    try:
        prediction = gateway.create_prediction(spec.ref, resolved.input, webhook)
    except GatewayError as exc:
        if exc.ambiguous:
            # The prediction may exist: look for it (reconcile) instead of creating again.
            logger.warning("Create for attempt %s may have happened (%s); reconciling", attempt_id, exc)
            enqueue("reconcile_attempt", attempt_id)
            return
        _not_created(attempt_id, exc, claimed_at)
        return
    adopted = adopt_prediction(attempt_id, prediction)
    if webhook is None and adopted is not None and adopted.state in Attempt.IN_FLIGHT:
        # Polling mode: the first read of this prediction is due in seconds (docs/architecture.md#wake-ups-on-time).
        due = timezone.now() + timedelta(seconds=clamp_wait(settings.STAGING_POLL_INTERVAL_SECONDS))
        enqueue_at("poll_attempt", attempt_id, at=due)


def refusal_wait(exc: GatewayError) -> float:
    """Seconds before a refused request is tried again: the wait a 429 names, else STAGING_RETRY_BASE_SECONDS;
    clamped (`clamp_wait`)."""
    return clamp_wait(exc.retry_after if exc.retry_after is not None else settings.STAGING_RETRY_BASE_SECONDS)


def _not_created(attempt_id: int, exc: GatewayError, claimed_at: datetime) -> None:
    """Replicate turned a request of the submit away, so no prediction exists: a refusal (429, 5xx, never
    connected) puts the same attempt back in the queue, unpaid; a permanent answer fails the attempt."""
    if exc.refused:
        retry_at = timezone.now() + timedelta(seconds=refusal_wait(exc))
        transitions.refused(attempt_id, exc.message, retry_at=retry_at, claimed_at=claimed_at)
    else:
        transitions.fail(attempt_id, exc.message, exc.error_class)


# --- News about a prediction ---------------------------------------------------------------------


def adopt_prediction(attempt_id: int, prediction: Prediction) -> Attempt | None:
    """Make `prediction` the attempt's and apply its news; cancel it at Replicate if nobody will use it.

    An orphan arises when the attempt ended meanwhile (canceled, failed by reconcile or a deadline):
    it is cancelled so it costs no more than it must. Returns None on a clash (another attempt's).
    """
    outcome = transitions.adopt(attempt_id, prediction.id)
    if outcome is Adoption.CLASH:
        return None
    attempt = Attempt.objects.get(pk=attempt_id)
    if outcome is Adoption.ORPHAN:
        logger.warning("Attempt %s is %s; canceling orphan prediction %s", attempt_id, attempt.state, prediction.id)
        gateway.cancel_quietly(prediction.id)
        return attempt
    return transitions.apply_update(attempt, prediction)


def apply_prediction_update(prediction: Prediction, attempt: Attempt | None = None) -> Attempt | None:
    """Apply news about `prediction` (webhook, poll) to the attempt that owns it.

    Returns the attempt, or None when no attempt owns this prediction. A webhook that beats the
    create's answer adopts the prediction; a late prediction of an attempt that was given up is
    cancelled.
    """
    if attempt is None:
        attempt = Attempt.objects.filter(prediction_id=prediction.id).first()
        if attempt is None:
            return None
    elif attempt.prediction_id is None and attempt.state == S.SUBMITTING:
        return adopt_prediction(attempt.pk, prediction)
    if attempt.prediction_id != prediction.id:
        logger.warning("Prediction %s does not belong to attempt %s; ignored", prediction.id, attempt.pk)
        if attempt.prediction_id is None and attempt.is_terminal and prediction.running:
            gateway.cancel_quietly(prediction.id)  # the attempt was given up: stop paying for it
        return attempt
    return transitions.apply_update(attempt, prediction)
