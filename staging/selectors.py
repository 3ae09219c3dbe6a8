"""Reads of staging data: derived job status and the queries of the scheduled ticks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from models_config.builders import StagingRequest
from models_config.registry import get_spec
from models_config.schemas import StagingConfig
from models_config.selectors import ActiveConfig, config_for_job, get_active_config

from .models import Attempt, StagedImage, StagingJob

S = Attempt.State


def get_job(job_id: int) -> StagingJob:
    return StagingJob.objects.with_status().get(pk=job_id)


def outputs_of(job: StagingJob) -> QuerySet[StagedImage]:
    """Stored outputs of the job's latest succeeded attempt, with their derivatives (one query for all)."""
    attempt = job.attempts.filter(state=S.SUCCEEDED).order_by("-number").first()
    if attempt is None:
        return StagedImage.objects.none()
    return attempt.images.order_by("index").prefetch_related("derivatives")


def attempt_by_token(token: str) -> Attempt | None:
    return Attempt.objects.filter(token=token).first() if token else None


# --- What a new attempt would send ---------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedInput:
    active: ActiveConfig  # the stored config it started from (its version and arm are recorded on the attempt)
    config: StagingConfig  # after the override
    input: dict[str, Any]  # the exact Replicate input


def resolve_config(
    slug: str, override: Mapping[str, Any] | None, job_uid: uuid.UUID | None = None
) -> tuple[ActiveConfig, StagingConfig]:
    """The config a new attempt uses now: `override` > the stored version of the job's arm > code defaults.

    With `job_uid`, a running canary may put the job on its candidate (`config_for_job`); without one (a
    job not created yet) the active version is used. Raises pydantic's `ValidationError` when the override
    does not fit the model's schema.
    """
    active = get_active_config(slug) if job_uid is None else config_for_job(slug, job_uid)
    return active, get_spec(slug).resolve_config(active.config.model_dump(mode="json"), override)


def resolve_input(job: StagingJob, image_url: str, override: Mapping[str, Any] | None = None) -> ResolvedInput:
    """The input a new attempt of `job` sends now; `override` None means the job's own override.

    One function for the real submit and for `reprocess --dry-run`, so a dry run shows what would be sent,
    on the job's canary arm (docs/architecture.md#canary).
    """
    layer = job.config_override if override is None else override
    active, config = resolve_config(job.model_slug, layer, job.uid)
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
