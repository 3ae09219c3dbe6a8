"""Reprocessing, shared by `manage.py reprocess` and the admin's retry action: select jobs, plan each new
attempt (its exact input and estimated cost), check everything that can be checked before spending
(`preflight`), start the attempts, and run them in this process (`stage --wait`, `reprocess --wait`).

Selection, planning and preflight are reads (no writes, no calls to Replicate), so a dry run or a
confirmation page can never cost money. Starting goes through `services.retry_job` /
`services.reprocess_on_model` with what the plan saw (`Plan.expected`), so two runs at once give a job
one new attempt (docs/architecture.md#reprocessing). The in-process runner calls the same idempotent
steps the queue tasks call (submit, poll, collect), so a qcluster running at the same time may race it
harmlessly: every transition is a compare-and-set in `transitions`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import QuerySet, Sum
from django_q.conf import Conf
from pydantic import ValidationError

from models_config.registry import UnknownModelError, get_spec
from models_config.schemas import describe_errors
from models_config.selectors import get_version

from . import gateway, selectors, services, spend, storage, sweeps
from .errors import JobInputError, ReplicateNotConfigured
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
    until: date | None = None,
    limit: int | None = None,
) -> QuerySet[StagingJob]:
    """Jobs to reprocess, annotated with `derived_status`, oldest first.

    Ids and filters combine (a named job must also match the filters); `since` and `until` are
    inclusive UTC dates; `limit` keeps the newest N of the matching jobs. Without `status`, every
    finished job matches (failed, canceled, succeeded): a job still queued or running cannot get a new
    attempt. Raises `JobInputError` for unknown ids, an unknown model or status, an empty date range, a
    limit below 1, and when nothing at all narrows the selection (reprocessing every job by accident
    costs money).
    """
    if not ids and not (model or status or since or until):
        raise JobInputError("Name job ids or at least one filter (--model, --status, --since, --until).")
    if model is not None:
        _check_model(model)
    if status is not None and status not in REPROCESSABLE:
        raise JobInputError(f"Unknown status '{status}'; choose one of: {', '.join(REPROCESSABLE)}.")
    if since and until and until < since:
        raise JobInputError(f"--until {until} is before --since {since}: no day is in that range.")
    if limit is not None and limit < 1:
        raise JobInputError(f"--limit must be a positive number of jobs, got {limit}.")
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
    if until:
        queryset = queryset.filter(created_at__date__lte=until)
    if limit is not None:
        newest = list(queryset.order_by("-created_at", "-pk").values_list("pk", flat=True)[:limit])
        queryset = StagingJob.objects.with_status().filter(pk__in=newest)
    return queryset.order_by("created_at", "pk")


def unfinished_among(ids: Sequence[int]) -> list[StagingJob]:
    """Named jobs left out of a selection because they are still queued or running."""
    jobs = StagingJob.objects.with_status().filter(pk__in=ids)
    return list(jobs.exclude(derived_status__in=REPROCESSABLE).order_by("pk"))


def _check_model(slug: str) -> None:
    try:
        get_spec(slug)
    except UnknownModelError as exc:
        raise JobInputError(str(exc)) from None


# --- Planning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What to do to each selected job: the override, the target model, the stored config version."""

    override: Mapping[str, Any] | None = None  # None: each job keeps its own (dropped with to_model)
    to_model: str | None = None  # None: a new attempt of the job itself
    config_version: int | None = None  # None: the active version of the (target) model


@dataclass
class Plan:
    """What reprocessing one job would send and cost; `error` set when its config would not validate."""

    job: StagingJob
    request: Request = field(default_factory=Request)
    target: str = ""  # the model the new attempt runs
    input: dict[str, Any] | None = None
    outputs: int = 1
    cost: Decimal = Decimal("0")
    config_version: int | None = None
    version_id: int | None = None  # the pinned version, when one was asked for
    expected: int = 0  # what `start` expects to still hold: the latest attempt number, or newest copy (0 none)
    error: str = ""


def photo_reference(job: StagingJob) -> str:
    """The image URL as it would be sent; without a public URL the real one needs a Files API upload,
    so a readable placeholder stands in (a dry run must not upload anything)."""
    photo = job.sent_photo
    if settings.STAGING_PUBLIC_URL:
        return storage.public_url(photo)
    return f"files-api-upload://{photo.name}"


def pinned_version_id(slug: str, number: int | None) -> int | None:
    """The id of `slug`'s stored version `number` (None: follow the active one); `JobInputError` if missing."""
    if number is None:
        return None
    version = get_version(slug, number)
    if version is None:
        raise JobInputError(f"{slug} has no stored config version {number}.")
    return version.pk


def plan_for(job: StagingJob, request: Request | None = None, version_id: int | None = None) -> Plan:
    """The exact input a new attempt would send now ((pinned or active) config + override) and its price."""
    request = request or Request()
    target = request.to_model or job.model_slug
    subject = services.unsaved_copy(job, target, request.override) if request.to_model else job
    plan = Plan(job=job, request=request, target=target, version_id=version_id)
    if request.to_model:
        plan.expected = job.copies.filter(model_slug=target).order_by("-pk").values_list("pk", flat=True).first() or 0
    else:
        plan.expected = job.attempts.order_by("-number").values_list("number", flat=True).first() or 0
    try:
        resolved = selectors.resolve_input(subject, photo_reference(job), request.override, version_id=version_id)
    except ValidationError as exc:
        plan.error = f"invalid config for {target}: {describe_errors(exc.errors())}"
        return plan
    spec = get_spec(target)
    plan.input = resolved.input
    plan.outputs = spec.output_count(resolved.config)
    plan.cost = spec.estimate_cost(resolved.config)
    plan.config_version = resolved.active.version_number
    return plan


def plan_all(jobs: Sequence[StagingJob], request: Request | None = None) -> list[Plan]:
    """A plan per job. `JobInputError` for what is wrong with the request itself: an unknown target model,
    a config version that does not exist, or one named for jobs of several models (version N of which?)."""
    request = request or Request()
    if request.to_model:
        _check_model(request.to_model)
    version_ids: dict[str, int | None] = {}
    for slug in sorted({request.to_model or job.model_slug for job in jobs}):
        version_ids[slug] = pinned_version_id(slug, request.config_version)
    if request.config_version is not None and len(version_ids) > 1:
        raise JobInputError(
            f"--config-version {request.config_version} is ambiguous for jobs of {', '.join(version_ids)}; "
            "narrow with --model or name a target with --to-model."
        )
    return [plan_for(job, request, version_ids[request.to_model or job.model_slug]) for job in jobs]


def total_cost(plans: Sequence[Plan]) -> Decimal:
    return sum((plan.cost for plan in plans if not plan.error), Decimal("0"))


def cost_by_model(plans: Sequence[Plan]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for plan in plans:
        if not plan.error:
            totals[plan.target] = totals.get(plan.target, Decimal("0")) + plan.cost
    return totals


def needs_confirmation(plans: Sequence[Plan]) -> bool:
    """Above STAGING_REPROCESS_CONFIRM_JOBS jobs or STAGING_REPROCESS_CONFIRM_COST dollars a person must confirm."""
    return (
        len(plans) > settings.STAGING_REPROCESS_CONFIRM_JOBS
        or total_cost(plans) > settings.STAGING_REPROCESS_CONFIRM_COST
    )


# --- Before spending ------------------------------------------------------------------------------


def preflight(plans: Sequence[Plan]) -> list[str]:
    """Every problem that can be found before anything is created, one line each (empty: go ahead).

    Run before the first attempt is created, never between attempts: a reprocess without a token once
    queued an attempt that then failed and showed a delivered job as failed.
    """
    problems = []
    try:
        gateway.require_configured()
    except ReplicateNotConfigured as exc:
        problems.append(str(exc))
    problems.extend(f"job {plan.job.pk}: {plan.error}" for plan in plans if plan.error)
    problems.extend(spend.budget_problems(cost_by_model(plans)))
    return problems


@dataclass
class Review:
    """What a confirmation page shows before anything is spent (the admin's retry action)."""

    plans: list[Plan]
    skipped: list[StagingJob]  # still queued or running: no new attempt possible
    total: Decimal
    problems: list[str]


def review(ids: Sequence[int], request: Request | None = None) -> Review:
    """Plans, skipped jobs, the estimated total and the preflight problems of reprocessing the jobs `ids`."""
    plans = plan_all(list(select_jobs(ids)), request) if ids else []
    return Review(plans, unfinished_among(ids), total_cost(plans), preflight(plans) if plans else [])


# --- Starting and following -----------------------------------------------------------------------


def start(plan: Plan, policy: services.OverridePolicy = services.OPERATOR) -> Attempt:
    """Create the plan's attempt (a new attempt, or a new job on the target model) and queue it.

    Raises `StagingError`: `JobBusyError` when another run got there first, `JobInputError` for an
    override the job's prompt cannot take.
    """
    request = plan.request
    if request.to_model:
        return services.reprocess_on_model(
            plan.job.pk,
            request.to_model,
            request.override,
            policy,
            version_id=plan.version_id,
            expected_copy=plan.expected,
        )
    return services.retry_job(
        plan.job.pk, request.override, policy, version_id=plan.version_id, expected_latest=plan.expected
    )


def actual_cost(attempt: Attempt) -> Decimal:
    """What the attempt and the automatic retries it led to cost (Replicate's price per image returned)."""
    spent = Attempt.objects.filter(job_id=attempt.job_id, number__gte=attempt.number).aggregate(total=Sum("cost"))
    return spent["total"] or Decimal("0")


@dataclass
class Summary:
    """The end of a `--wait`: how the new attempts ended, and what they cost beside the estimate."""

    estimated: Decimal
    counts: Counter[str] = field(default_factory=Counter)
    actual: Decimal = Decimal("0")

    def add(self, outcome: Outcome, started: Attempt) -> None:
        self.counts["timed out" if outcome.timed_out else outcome.status] += 1
        self.actual += actual_cost(started)

    def line(self) -> str:
        ends = [f"{self.counts[name]} {name}" for name in ("succeeded", "failed", "canceled")]
        if self.counts["timed out"]:
            ends.append(f"{self.counts['timed out']} timed out")
        return f"Done: {', '.join(ends)}; actual cost ${usd(self.actual)} (estimated ${usd(self.estimated)})."


def usd(amount: Decimal) -> str:
    """Dollars to the cent, or to the hundredth of a cent when a price has one (sums on SQLite carry noise)."""
    cents = amount.quantize(Decimal("0.01"))
    return str(cents if cents == amount.quantize(Decimal("0.0001")) else amount.quantize(Decimal("0.0001")))


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
