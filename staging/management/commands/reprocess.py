"""`manage.py reprocess`: add a new attempt (a new paid prediction) to existing jobs.

Selection (`reprocessing.select_jobs`): job ids and/or filters, combined; without `--status` every
finished job matching them is selected; jobs still queued or running are skipped (reported). With no
ids and no filter the command refuses, so nobody reprocesses every job by accident. An empty selection
is not an error: it says so and exits 0. `--dry-run` prints each job's exact Replicate input (active
config + override) and its estimated cost, and writes nothing. Otherwise it asks for confirmation
(refusing when stdin is not a terminal unless `--yes`), then calls `services.retry_job` per job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_config.registry import REGISTRY
from staging import reprocessing, services
from staging.errors import JobInputError
from staging.management.options import parse_config_option


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since must be a date like 2025-01-31, got {value!r}.") from None


class Command(BaseCommand):
    help = (
        "Add a new attempt to existing jobs (by id and/or filters), with the active config plus an optional "
        "override. --dry-run shows the exact inputs and estimated cost without changing anything."
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
        parser.add_argument(
            "--config", metavar="JSON", help="Config override (JSON object) for the new attempts; replaces the job's."
        )
        parser.add_argument("--dry-run", action="store_true", help="Print inputs and costs; change nothing.")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument("--wait", action="store_true", help="Run the new attempts in this process until done.")
        parser.add_argument("--timeout", type=float, default=600.0, metavar="S", help="Per-job limit for --wait.")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _date(options["since"]) if options["since"] else None
        override = parse_config_option(options["config"])
        ids = options["job_ids"]
        try:
            jobs = list(reprocessing.select_jobs(ids, model=options["model"], status=options["status"], since=since))
        except JobInputError as exc:
            raise CommandError(str(exc)) from None
        if ids:
            for job in reprocessing.unfinished_among(ids):
                self.stdout.write(f"Job {job.pk}: skipped, it is still {job.status}.")
        if not jobs:
            self.stdout.write("No job matches; nothing to reprocess.")
            return

        plans = reprocessing.plan_all(jobs, override)
        errors = [plan for plan in plans if plan.error]
        if errors:
            detail = "; ".join(f"job {plan.job.pk}: {plan.error}" for plan in errors)
            raise CommandError(f"Nothing changed, the config would not validate: {detail}")
        total = reprocessing.total_cost(plans)

        if options["dry_run"]:
            for plan in plans:
                version = f"v{plan.config_version}" if plan.config_version else "code defaults"
                self.stdout.write(
                    f"Job {plan.job.pk} ({plan.job.model_slug}, now {plan.job.status}, config {version}): "
                    f"estimated ${plan.cost} for {plan.outputs} image(s)"
                )
                self.stdout.write(json.dumps(plan.input, indent=2, sort_keys=True))
            self.stdout.write(f"Dry run: {len(plans)} job(s), estimated total ${total}. Nothing was changed.")
            return

        summary = f"Add a new attempt to {len(plans)} job(s), estimated ${total}"
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError(f"{summary}: confirmation needed but stdin is not a terminal; pass --yes.")
            if input(f"{summary}. Continue? [y/N] ").strip().lower() not in ("y", "yes"):
                raise CommandError("Aborted; nothing changed.")

        if options["wait"] and options["verbosity"] < 2:
            logging.getLogger("django-q").setLevel(logging.WARNING)
        queued = []
        # With --wait the submissions run here at once (no qcluster needed), else they go to the queue.
        with reprocessing.inline_queue() if options["wait"] else contextlib.nullcontext():
            for plan in plans:
                try:
                    attempt = services.retry_job(plan.job.pk, override, policy=services.OPERATOR)
                except JobInputError as exc:
                    self.stderr.write(f"Job {plan.job.pk}: not reprocessed: {exc}")
                    continue
                queued.append(plan.job.pk)
                self.stdout.write(f"Job {plan.job.pk}: attempt {attempt.number} queued.")
        self.stdout.write(f"{len(queued)} of {len(plans)} job(s) reprocessed, estimated ${total}.")
        if options["wait"] and queued:
            self._wait(queued, options["timeout"])
        if len(queued) < len(plans):
            raise CommandError(f"{len(plans) - len(queued)} job(s) could not be reprocessed (see above).")

    def _wait(self, job_ids: list[int], timeout: float) -> None:
        failed = []
        for job_id in job_ids:

            def progress(attempt: Any, job_id: int = job_id) -> None:
                self.stdout.write(f"  job {job_id} attempt {attempt.number}: {attempt.state}")

            outcome = reprocessing.run_job(job_id, timeout=timeout, on_change=progress)
            if outcome.status != "succeeded":
                failed.append(job_id)
                self.stderr.write(f"Job {job_id}: {outcome.status}" + (" (timed out)" if outcome.timed_out else ""))
            for stored in outcome.paths:
                self.stdout.write(stored)
        if failed:
            raise CommandError(f"{len(failed)} job(s) did not succeed: {', '.join(map(str, failed))}.")
