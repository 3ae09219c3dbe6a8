"""`manage.py reprocess`: add a new attempt (a new paid prediction) to existing jobs.

Selection (`reprocessing.select_jobs`): job ids and/or filters, combined; without `--status` every
finished job matching them is selected; jobs still queued or running are skipped (reported). With no
ids and no filter the command refuses, so nobody reprocesses every job by accident. An empty selection
is not an error: it says so and exits 0. The estimated total is always printed before anything is
spent; `--dry-run` also prints each job's exact Replicate input and writes nothing. Everything that can
be checked before spending (`reprocessing.preflight`) is, before the first attempt is created. Above
STAGING_REPROCESS_CONFIRM_JOBS / STAGING_REPROCESS_CONFIRM_COST it asks (refusing when stdin is not a
terminal unless `--yes`). A job another run reprocessed meanwhile is reported and makes the exit status
non-zero (docs/operations.md#reprocessing).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from models_config.registry import REGISTRY
from staging import emulation, reprocessing
from staging.errors import JobInputError, StagingError
from staging.management.options import parse_config_option
from staging.models import Attempt


def _date(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{flag} must be a date like 2025-01-31, got {value!r}.") from None


def _limit(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise CommandError(f"--limit must be a positive whole number of jobs, got {value!r}.")
    return int(value)


def _config_version(value: str | None) -> int | None:
    if value is None or value == "active":
        return None
    if not value.isdigit() or int(value) < 1:
        raise CommandError(f"--config-version must be 'active' or a version number, got {value!r}.")
    return int(value)


class Command(BaseCommand):
    help = (
        "Add a new attempt to existing jobs (by id and/or filters), with the active (or a stored) config plus an "
        "optional override, or stage their photos again on another model (--to-model). The estimated cost is "
        "printed first; --dry-run shows the exact inputs and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_ids", nargs="*", type=int, metavar="JOB_ID", help="Jobs to reprocess.")
        parser.add_argument("--model", choices=list(REGISTRY), help="Only jobs of this model.")
        parser.add_argument(
            "--status",
            choices=list(reprocessing.REPROCESSABLE),
            help="Only jobs in this status (default: any finished job).",
        )
        parser.add_argument("--since", metavar="YYYY-MM-DD", help="Only jobs created on or after this date (UTC).")
        parser.add_argument("--until", metavar="YYYY-MM-DD", help="Only jobs created on or before this date (UTC).")
        parser.add_argument("--limit", metavar="N", help="At most the N newest matching jobs.")
        parser.add_argument(
            "--config-version",
            metavar="active|N",
            help="Run with this stored config version of the (target) model instead of the active one; "
            "--config is applied on top of it.",
        )
        parser.add_argument(
            "--to-model",
            choices=list(REGISTRY),
            metavar="SLUG",
            help="Stage each job's photo again on this model, as a new job linked to the old one.",
        )
        parser.add_argument(
            "--config", metavar="JSON", help="Config override (JSON object) for the new attempts; replaces the job's."
        )
        parser.add_argument("--dry-run", action="store_true", help="Print inputs and costs; change nothing.")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument("--wait", action="store_true", help="Run the new attempts in this process until done.")
        parser.add_argument("--timeout", type=float, default=600.0, metavar="S", help="Per-job limit for --wait.")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _date(options["since"], "--since") if options["since"] else None
        until = _date(options["until"], "--until") if options["until"] else None
        limit = _limit(options["limit"]) if options["limit"] is not None else None
        request = reprocessing.Request(
            override=parse_config_option(options["config"]),
            to_model=options["to_model"],
            config_version=_config_version(options["config_version"]),
        )
        self.tty = self.stdout.isatty()
        ids = options["job_ids"]
        try:
            selection = reprocessing.select_jobs(
                ids, model=options["model"], status=options["status"], since=since, until=until, limit=limit
            )
            jobs = list(selection)
            plans = reprocessing.plan_all(jobs, request)
        except JobInputError as exc:
            raise CommandError(str(exc)) from None
        if ids:
            for job in reprocessing.unfinished_among(ids):
                self.stdout.write(f"Job {job.pk}: skipped, it is still {job.status}.")
        if not jobs:
            self.stdout.write("No job matches; nothing to reprocess.")
            return
        total = reprocessing.total_cost(plans)

        if options["dry_run"]:
            self._print_plans(plans)
            self.stdout.write(f"Dry run: {len(plans)} job(s), estimated total ${total}. Nothing was changed.")
            return

        backend = emulation.use_serve_backend()
        if backend:
            self.stdout.write(backend)
        problems = reprocessing.preflight(plans)
        if problems:
            raise CommandError(f"Nothing changed: {'; '.join(problems)}")
        summary = f"Add a new attempt to {len(plans)} job(s), estimated total ${total}"
        if reprocessing.needs_confirmation(plans) and not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError(f"{summary}: confirmation needed but stdin is not a terminal; pass --yes.")
            if input(f"{summary}. Continue? [y/N] ").strip().lower() not in ("y", "yes"):
                raise CommandError("Aborted; nothing changed.")
        else:
            self.stdout.write(f"{summary}.")

        if options["wait"] and options["verbosity"] < 2:
            logging.getLogger("django-q").setLevel(logging.WARNING)
        started = self._start(plans, options["wait"])
        self.stdout.write(f"{len(started)} of {len(plans)} job(s) reprocessed, estimated ${total}.")
        if options["wait"] and started:
            self._wait(started, reprocessing.Summary(estimated=total), options["timeout"])
        if len(started) < len(plans):
            raise CommandError(f"{len(plans) - len(started)} job(s) could not be reprocessed (see above).")

    def _print_plans(self, plans: list[reprocessing.Plan]) -> None:
        for plan in plans:
            version = f"v{plan.config_version}" if plan.config_version else "code defaults"
            onto = f" -> new job on {plan.target}" if plan.request.to_model else ""
            if plan.error:
                self.stdout.write(f"Job {plan.job.pk}{onto}: {plan.error}")
                continue
            self.stdout.write(
                f"Job {plan.job.pk} ({plan.job.model_slug}{onto}, now {plan.job.status}, config {version}): "
                f"estimated ${plan.cost} for {plan.outputs} image(s)"
            )
            self.stdout.write(json.dumps(plan.input, indent=2, sort_keys=True))

    def _progress(self) -> Progress:
        """A bar with counts on a terminal; nothing at all otherwise (CI logs keep only the summary lines)."""
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=sys.stdout),
            disable=not self.tty,
            transient=True,
        )

    def _say(self, progress: Progress, line: str) -> None:
        """A line above the live bar on a terminal (writing past it would tear the bar), else a plain line."""
        if self.tty:
            progress.console.print(line, markup=False, highlight=False)
        else:
            self.stdout.write(line)

    def _start(self, plans: list[reprocessing.Plan], wait: bool) -> list[Attempt]:
        started: list[Attempt] = []
        # With --wait the submissions run here at once (no qcluster needed), else they go to the queue.
        with reprocessing.inline_queue() if wait else contextlib.nullcontext(), self._progress() as progress:
            task = progress.add_task("Creating attempts", total=len(plans))
            for plan in plans:
                try:
                    attempt = reprocessing.start(plan)
                except StagingError as exc:
                    self.stderr.write(f"Job {plan.job.pk}: not reprocessed: {exc}")
                    progress.advance(task)
                    continue
                started.append(attempt)
                if plan.request.to_model:
                    self._say(progress, f"Job {plan.job.pk}: new job {attempt.job_id} on {plan.target} queued.")
                else:
                    self._say(progress, f"Job {plan.job.pk}: attempt {attempt.number} queued.")
                progress.advance(task)
        return started

    def _wait(self, started: list[Attempt], summary: reprocessing.Summary, timeout: float) -> None:
        not_succeeded = []
        with self._progress() as progress:
            task = progress.add_task("Waiting for the jobs", total=len(started))
            for attempt in started:

                def changed(latest: Attempt, job_id: int = attempt.job_id) -> None:
                    if not self.tty:
                        self.stdout.write(f"  job {job_id} attempt {latest.number}: {latest.state}")

                outcome = reprocessing.run_job(attempt.job_id, timeout=timeout, on_change=changed)
                summary.add(outcome, attempt)
                progress.advance(task)
                if outcome.status != "succeeded":
                    not_succeeded.append(attempt.job_id)
                    self.stderr.write(
                        f"Job {attempt.job_id}: {outcome.status}" + (" (timed out)" if outcome.timed_out else "")
                    )
                for stored in outcome.paths:
                    self._say(progress, stored)
        self.stdout.write(summary.line())
        if not_succeeded:
            raise CommandError(f"{len(not_succeeded)} job(s) did not succeed: {', '.join(map(str, not_succeeded))}.")
