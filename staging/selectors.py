"""Reads of staging data: who may see which job, derived job status, and the queries of the scheduled ticks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from api.auth import holds
from models_config.builders import StagingRequest
from models_config.registry import get_spec
from models_config.schemas import StagingConfig
from models_config.selectors import ActiveConfig, config_for_job, get_active_config, stored_config

from .errors import OutputNotFound
from .models import Attempt, StagedImage, StagingJob

S = Attempt.State


# --- Who may see and act on a job (docs/architecture.md#who-sees-a-job) ---------------------------

CREATE_PERM = "staging.add_stagingjob"  # create a job (paid)
CHANGE_PERM = "staging.change_stagingjob"  # reprocess (paid) or cancel a job it may see
VIEW_ALL_PERMS = ("staging.view_stagingjob", CHANGE_PERM)  # change implies view, as in Django's admin


def visible_jobs(user: AbstractBaseUser) -> QuerySet[StagingJob]:
    """The jobs `user` may see: every job for staff with the view (or change) permission on jobs, only the
    ones they created for anybody else. The API answers 404 for the rest, so job ids reveal nothing.

    Every jobs endpoint that names a job reads it through here (get, files, reprocess, cancel)."""
    jobs = StagingJob.objects.all()
    if holds(user, *VIEW_ALL_PERMS):
        return jobs
    if not (user.is_active and user.is_authenticated):
        return jobs.none()
    return jobs.filter(created_by=user.pk)


@dataclass(frozen=True)
class JobFilter:
    """The filters of a job list, each optional; `until` is exclusive."""

    status: str | None = None
    model: str | None = None
    listing: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_jobs(user: AbstractBaseUser, filters: JobFilter) -> QuerySet[StagingJob]:
    """`user`'s visible jobs that pass `filters`, newest first, with their derived status (no query per row).

    Playground tries are not jobs anyone asked to deliver, so they are left out (docs/architecture.md#the-playground).
    """
    jobs = visible_jobs(user).filter(is_try=False).with_status().select_related("created_by")
    if filters.status is not None:
        jobs = jobs.filter(derived_status=filters.status)
    if filters.model is not None:
        jobs = jobs.filter(model_slug=filters.model)
    if filters.listing is not None:
        jobs = jobs.filter(listing_id=filters.listing)
    if filters.since is not None:
        jobs = jobs.filter(created_at__gte=filters.since)
    if filters.until is not None:
        jobs = jobs.filter(created_at__lt=filters.until)
    return jobs.order_by("-created_at", "-pk")


def get_job(job_id: int) -> StagingJob:
    return StagingJob.objects.with_status().get(pk=job_id)


def outputs_of(job: StagingJob) -> QuerySet[StagedImage]:
    """Stored outputs of the attempt that delivers the job, with their derivatives (one query for all).

    That is the attempt holding the chosen output, or else the latest succeeded one
    (docs/architecture.md#choosing-the-output), so downloads and exports follow a choice by staff.
    """
    chosen = job.chosen_output
    if chosen is not None:
        attempt_id = chosen.attempt_id
    else:
        attempt_id = job.attempts.filter(state=S.SUCCEEDED).order_by("-number").values_list("pk", flat=True).first()
    if attempt_id is None:
        return StagedImage.objects.none()
    return StagedImage.objects.filter(attempt_id=attempt_id).order_by("index").prefetch_related("derivatives")


def deliverable(job: StagingJob) -> StagedImage | None:
    """The one output to deliver: the chosen one, else the latest succeeded attempt's first."""
    return job.chosen_output or outputs_of(job).first()


def attempts_with_outputs(job: StagingJob) -> QuerySet[Attempt]:
    """Every attempt of the job, oldest first, with its config version and its outputs' derivatives."""
    return job.attempts.select_related("config_version").prefetch_related("images__derivatives").order_by("number")


def output_of(job_id: int, index: int, attempt_number: int | None = None) -> StagedImage:
    """Output `index` of attempt `attempt_number`, or of the delivering attempt when None.

    Raises `OutputNotFound` naming what is missing.
    """
    job = StagingJob.objects.select_related("chosen_output").filter(pk=job_id).first()
    if job is None:
        raise OutputNotFound(f"No job {job_id}.")
    if attempt_number is None:
        images = outputs_of(job)
    else:
        images = StagedImage.objects.filter(attempt__job=job, attempt__number=attempt_number)
    image = images.filter(index=index).select_related("attempt").first()
    if image is None:
        where = f"attempt {attempt_number}" if attempt_number is not None else "its delivered attempt"
        raise OutputNotFound(f"Job {job_id} has no stored output {index} in {where}.")
    return image


def attempt_by_token(token: str) -> Attempt | None:
    return Attempt.objects.filter(token=token).first() if token else None


# --- What a new attempt would send ---------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedInput:
    active: ActiveConfig  # the stored config it started from (its version and arm are recorded on the attempt)
    config: StagingConfig  # after the override
    input: dict[str, Any]  # the exact Replicate input


def resolve_config(
    slug: str,
    override: Mapping[str, Any] | None,
    version_id: int | None = None,
    job_uid: uuid.UUID | None = None,
) -> tuple[ActiveConfig, StagingConfig]:
    """The config a new attempt uses now: `override` > the stored version > code defaults.

    The stored version is the pinned one when `version_id` is given (an attempt's `pinned_version`, see
    docs/architecture.md#reprocessing); else, with `job_uid`, the one of the job's canary arm
    (`config_for_job`: a running canary may put the job on its candidate); else the active one (a job not
    created yet). Raises pydantic's `ValidationError` when the override (or the pinned version) does not
    fit the model's schema.
    """
    if version_id is not None:
        active = stored_config(slug, version_id)
    elif job_uid is not None:
        active = config_for_job(slug, job_uid)
    else:
        active = get_active_config(slug)
    return active, get_spec(slug).resolve_config(active.config.model_dump(mode="json"), override)


def resolve_input(
    job: StagingJob, image_url: str, override: Mapping[str, Any] | None = None, *, version_id: int | None = None
) -> ResolvedInput:
    """The input a new attempt of `job` sends now; `override` None means the job's own override.

    One function for the real submit and for `reprocess --dry-run`, so a dry run shows what would be sent,
    on the job's canary arm (docs/architecture.md#canary).
    """
    layer = job.config_override if override is None else override
    active, config = resolve_config(job.model_slug, layer, version_id, job.uid)
    request = StagingRequest(image_url, job.room_type, job.style, job.instructions, job.seed)
    return ResolvedInput(active, config, get_spec(job.model_slug).build_input(request, config))


# --- The scheduled ticks ------------------------------------------------------------------------


def attempts_to_poll(silent_since: datetime) -> QuerySet[Attempt]:
    """In-flight attempts with a prediction id that we have not heard about since `silent_since`."""
    return Attempt.objects.filter(
        state__in=Attempt.IN_FLIGHT, prediction_id__isnull=False, checked_at__lte=silent_since
    ).order_by("checked_at")


def stuck_submitting(claimed_before: datetime) -> QuerySet[Attempt]:
    return Attempt.objects.filter(
        state=S.SUBMITTING, prediction_id__isnull=True, submitting_at__lte=claimed_before
    ).order_by("submitting_at")


def stalled_collecting(silent_since: datetime) -> QuerySet[Attempt]:
    return Attempt.objects.filter(state=S.COLLECTING, checked_at__lte=silent_since).order_by("checked_at")


def past_deadline(now: datetime) -> QuerySet[Attempt]:
    return Attempt.objects.filter(deadline__lt=now).exclude(state__in=Attempt.TERMINAL).order_by("deadline")
