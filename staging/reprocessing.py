"""Reads and helpers for the command line: selecting jobs to reprocess, pricing a dry run, and
running a job's pipeline inside the current process (`stage --wait`, `reprocess --wait`).

Selection and estimation are reads (no writes, no calls to Replicate), so a dry run can never cost
money. The in-process runner calls the same idempotent steps the queue tasks call (submit, poll,
collect), so a qcluster running at the same time may race it harmlessly: every transition is a
compare-and-set in `services`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django_q.conf import Conf
from pydantic import ValidationError

from models_config.registry import UnknownModelError, get_spec
from models_config.schemas import describe_errors

from . import selectors, storage, sweeps
from .errors import JobInputError
from .models import Attempt, JobStatus, StagingJob

S = Attempt.State
REPROCESSABLE = (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SUCCEEDED)


# --- Selection ----------------------------------------------------------------------------------


def select_jobs(
    ids: Sequence[int] = (),
    *,
    model: str | None = None,
    status: str | None = None,
    since: date | None = None,
) -> QuerySet[StagingJob]:
    """Jobs to reprocess, annotated with `derived_status`, oldest first.

    Ids and filters combine (a named job must also match the filters). Without `status`, every
    finished job matches (failed, canceled, succeeded): a job still queued or running cannot get a
    new attempt. Raises `JobInputError` for unknown ids, an unknown model or an unknown status, and
    when nothing at all narrows the selection (reprocessing every job by accident costs money).
    """
    if not ids and not (model or status or since):
        raise JobInputError("Name job ids or at least one filter (--model, --status, --since).")
    if model is not None:
        try:
            get_spec(model)
        except UnknownModelError as exc:
            raise JobInputError(str(exc)) from None
    if status is not None and status not in REPROCESSABLE:
        raise JobInputError(f"Unknown status '{status}'; choose one of: {', '.join(REPROCESSABLE)}.")
    queryset = StagingJob.objects.with_status()
    if ids:
        wanted = set(ids)
        found = set(StagingJob.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        missing = sorted(wanted - found)
        if missing:
            raise JobInputError(f"Unknown job id(s): {', '.join(map(str, missing))}.")
        queryset = queryset.filter(pk__in=wanted)
    else:
        queryset = queryset.filter(is_try=False)  # a filter never picks playground tries: they are not deliveries
    if model:
        queryset = queryset.filter(model_slug=model)
    queryset = queryset.filter(derived_status=status) if status else queryset.filter(derived_status__in=REPROCESSABLE)
    if since:
        queryset = queryset.filter(created_at__date__gte=since)
    return queryset.order_by("created_at", "pk")


def unfinished_among(ids: Sequence[int]) -> list[StagingJob]:
    """Named jobs left out of a selection because they are still queued or running."""
    jobs = StagingJob.objects.with_status().filter(pk__in=ids)
    return list(jobs.exclude(derived_status__in=REPROCESSABLE).order_by("pk"))


# --- Estimation ---------------------------------------------------------------------------------


@dataclass
class Plan:
    """What reprocessing one job would send and cost; `error` set when its config would not validate."""

    job: StagingJob
    input: dict[str, Any] | None = None
    outputs: int = 1
    cost: Decimal = Decimal("0")
    config_version: int | None = None
    error: str = ""


def photo_reference(job: StagingJob) -> str:
    """The image URL as it would be sent; without a public URL the real one needs a Files API upload,
    so a readable placeholder stands in (a dry run must not upload anything)."""
    photo = job.sent_photo
    if settings.STAGING_PUBLIC_URL:
        return storage.public_url(photo)
    return f"files-api-upload://{photo.name}"


def plan_for(job: StagingJob, override: Mapping[str, Any] | None = None) -> Plan:
    """The exact input a new attempt would send now (active config + override) and its price."""
    try:
        resolved = selectors.resolve_input(job, photo_reference(job), override)
    except ValidationError as exc:
        return Plan(job=job, error=f"invalid config for {job.model_slug}: {describe_errors(exc.errors())}")
    spec = get_spec(job.model_slug)
    return Plan(
        job=job,
        input=resolved.input,
        outputs=spec.output_count(resolved.config),
        cost=spec.estimate_cost(resolved.config),
        config_version=resolved.active.version_number,
    )


def plan_all(jobs: Sequence[StagingJob], override: Mapping[str, Any] | None = None) -> list[Plan]:
    return [plan_for(job, override) for job in jobs]


def total_cost(plans: Sequence[Plan]) -> Decimal:
    return sum((plan.cost for plan in plans if not plan.error), Decimal("0"))


# --- Running a job in this process ----------------------------------------------------------------


@contextmanager
def inline_queue() -> Iterator[None]:
    """Run queue tasks inline (django-q2 sync mode) while the block runs, so nothing waits for a qcluster."""
    previous = Conf.SYNC
    Conf.SYNC = True
    try:
        yield
    finally:
        Conf.SYNC = previous


@dataclass
class Outcome:
    job: StagingJob
    status: str
    attempt: Attempt | None
    paths: list[str] = field(default_factory=list)
    timed_out: bool = False


def stored_paths(job: StagingJob) -> list[str]:
    """Absolute paths of the job's stored outputs (URLs when the storage has no local files)."""
    result = []
    for image in selectors.outputs_of(job):
        try:
            result.append(image.file.path)
        except NotImplementedError:
            result.append(image.file.url)
    return result


def run_job(
    job_id: int,
    *,
    timeout: float,
    interval: float = 0.5,
    on_change: Callable[[Attempt], None] | None = None,
) -> Outcome:
    """Drive the job's latest attempt (and the retries it schedules) until the latest attempt ends.

    The outcome is that of the attempt, not of the job: a reprocess that failed reports failed even
    though the job keeps showing the output an earlier attempt delivered.
    `on_change` is called with the attempt each time the (attempt number, state) pair changes.
    """
    deadline = time.monotonic() + timeout
    seen: tuple[int, str] | None = None
    with inline_queue():
        while True:
            attempt = Attempt.objects.filter(job_id=job_id).order_by("-number").first()
            if attempt is not None and (attempt.number, attempt.state) != seen:
                seen = (attempt.number, attempt.state)
                if on_change:
                    on_change(attempt)
            job = selectors.get_job(job_id)
            if attempt is not None and attempt.is_terminal:
                status = Attempt.job_status_of(attempt.state)
                paths = stored_paths(job) if status == JobStatus.SUCCEEDED else []
                return Outcome(job=job, status=status, attempt=attempt, paths=paths)
            if time.monotonic() >= deadline:
                status = Attempt.job_status_of(attempt.state) if attempt else JobStatus.QUEUED
                return Outcome(job=job, status=status, attempt=attempt, timed_out=True)
            if attempt is not None:
                sweeps.advance(attempt, inline=True)
                fresh = Attempt.objects.get(pk=attempt.pk)
                if fresh.state != attempt.state:
                    continue  # progress: look again at once
            time.sleep(interval)
