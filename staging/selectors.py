"""Reads of staging data: derived job status and the queries of the scheduled ticks."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Case, CharField, OuterRef, QuerySet, Subquery, Value, When

from .models import Attempt, JobStatus, StagedImage, StagingJob

S = Attempt.State


def with_status(queryset: QuerySet[StagingJob] | None = None) -> QuerySet[StagingJob]:
    """Jobs annotated with `derived_status` (from the latest attempt), filterable in SQL."""
    queryset = StagingJob.objects.all() if queryset is None else queryset
    latest_state = Subquery(Attempt.objects.filter(job=OuterRef("pk")).order_by("-number").values("state")[:1])
    return queryset.annotate(
        latest_state=latest_state,
        derived_status=Case(
            When(latest_state__in=Attempt.TERMINAL, then="latest_state"),
            When(
                latest_state__in=[S.SUBMITTING, S.SUBMITTED, S.PROCESSING, S.COLLECTING],
                then=Value(JobStatus.RUNNING),
            ),
            default=Value(JobStatus.QUEUED),
            output_field=CharField(),
        ),
    )


def job_status(job: StagingJob) -> str:
    return job.status


def get_job(job_id: int) -> StagingJob:
    return with_status().get(pk=job_id)


def outputs_of(job: StagingJob) -> QuerySet[StagedImage]:
    """Stored outputs of the job's latest succeeded attempt."""
    attempt = job.attempts.filter(state=S.SUCCEEDED).order_by("-number").first()
    if attempt is None:
        return StagedImage.objects.none()
    return attempt.images.order_by("index")


def attempt_by_token(token: str) -> Attempt | None:
    return Attempt.objects.filter(token=token).first() if token else None


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
