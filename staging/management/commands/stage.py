"""`manage.py stage IMAGE --model SLUG`: stage one photo from the command line.

Without `--wait` the job is queued for the qcluster and its id printed. With `--wait` the pipeline
runs in this process (no qcluster needed): one progress line per state change, exit status 0 only
when the job succeeded, and the stored output paths as the last lines. `--emulator` starts the
bundled Replicate emulator in this process; since it lives only as long as the command, it implies
`--wait`. All validation happens in `services.create_job`, so a bad argument stores nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE
from models_config.registry import REGISTRY
from staging import emulation, reprocessing, services
from staging.emulation import emulator_settings
from staging.errors import ImageRejected, JobInputError, ReplicateNotConfigured
from staging.management.options import parse_config_option
from staging.models import Attempt

NO_TOKEN = (
    "REPLICATE_API_TOKEN is not set. Either set REPLICATE_API_TOKEN to a Replicate API token "
    "(https://replicate.com/account/api-tokens), or pass --emulator to run against the bundled local emulator."
)


class Command(BaseCommand):
    help = (
        "Stage one photo of an empty room with a Replicate model. Prints the job id (queued for the qcluster), "
        "or with --wait runs the job here and prints the stored output paths last (exit status 0 only on success)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("image", help="Path of the photo (JPEG, PNG or WebP).")
        parser.add_argument("--model", required=True, help=f"Model slug: {', '.join(REGISTRY)}.")
        parser.add_argument(
            "--room-type",
            default=DEFAULT_ROOM_TYPE,
            help=f"Kind of room, e.g. 'living room' (default '{DEFAULT_ROOM_TYPE}').",
        )
        parser.add_argument("--style", default=DEFAULT_STYLE, help=f"Furnishing style (default '{DEFAULT_STYLE}').")
        parser.add_argument("--instructions", default="", help="Extra free-text instructions for the prompt.")
        parser.add_argument("--seed", type=int, default=None, help="Seed (a seed fixed in the config wins).")
        parser.add_argument(
            "--config", default=None, metavar="JSON", help="Config override for this job, a JSON object."
        )
        parser.add_argument("--wait", action="store_true", help="Run the job in this process until it finishes.")
        parser.add_argument(
            "--timeout", type=float, default=600.0, metavar="S", help="Seconds --wait waits at most (default 600)."
        )
        parser.add_argument(
            "--emulator",
            action="store_true",
            help="Use the bundled Replicate emulator, started in this process (implies --wait; costs nothing).",
        )
        parser.add_argument(
            "--emulator-latency", type=float, default=1.0, metavar="S", help="Seconds an emulated prediction takes."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["image"]).expanduser()
        if not path.is_file():
            raise CommandError(f"No such image file: {path}")
        if options["model"] not in REGISTRY:
            raise CommandError(f"Unknown model '{options['model']}'; known models: {', '.join(REGISTRY)}.")
        override = parse_config_option(options["config"])
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        backend = "" if options["emulator"] else emulation.use_serve_backend()
        if backend:
            self.stdout.write(backend)
        if not settings.REPLICATE_API_TOKEN and not options["emulator"]:
            raise CommandError(NO_TOKEN)

        with ExitStack() as stack:
            emulator = stack.enter_context(_emulator(options["emulator_latency"])) if options["emulator"] else None
            if emulator is not None:
                self.stdout.write(f"Using the bundled Replicate emulator at {emulator.base_url}")
            wait = options["wait"] or emulator is not None
            if wait and options["verbosity"] < 2:
                logging.getLogger("django-q").setLevel(logging.WARNING)  # the progress lines say it all
            if wait:
                with reprocessing.inline_queue():
                    job = self._create(path, options, override)
                self._wait(job.pk, options["timeout"])
            else:
                job = self._create(path, options, override)
                self.stdout.write(f"Job {job.pk} queued ({job.model_slug}); a running qcluster will process it.")
                self.stdout.write(str(job.pk))

    def _create(self, path: Path, options: dict[str, Any], override: dict[str, Any] | None):
        try:
            with path.open("rb") as handle:
                return services.create_job(
                    handle,
                    options["model"],
                    room_type=options["room_type"],
                    style=options["style"],
                    instructions=options["instructions"],
                    seed=options["seed"],
                    config_override=override,
                    policy=services.OPERATOR,
                )
        except ReplicateNotConfigured:
            raise CommandError(NO_TOKEN) from None
        except (ImageRejected, JobInputError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from None

    def _wait(self, job_id: int, timeout: float) -> None:
        self.stdout.write(f"Job {job_id} created; running it here (timeout {timeout:g} s).")

        def progress(attempt: Attempt) -> None:
            extra = f" ({attempt.error})" if attempt.error and attempt.is_terminal else ""
            if attempt.held_reason:  # a spend cap: it waits for budget (docs/architecture.md#spend-caps)
                extra = f" ({attempt.held_reason})"
            self.stdout.write(f"  attempt {attempt.number}: {attempt.state}{extra}", ending="\n")
            self.stdout.flush()

        outcome = reprocessing.run_job(job_id, timeout=timeout, on_change=progress)
        if outcome.timed_out:
            raise CommandError(
                f"Job {job_id} is still {outcome.status} after {timeout:g} s; a running qcluster will finish it "
                f"(check with the admin or GET /api/v1/jobs/{job_id})."
            )
        if outcome.status != "succeeded":
            reason = outcome.attempt.error if outcome.attempt and outcome.attempt.error else "no reason recorded"
            raise CommandError(f"Job {job_id} {outcome.status}: {reason}")
        attempt = outcome.attempt
        cost = f", cost ${attempt.cost}" if attempt and attempt.cost is not None else ""
        self.stdout.write(self.style.SUCCESS(f"Job {job_id} succeeded{cost}. Outputs:"))
        for stored in outcome.paths:
            self.stdout.write(stored)


@contextmanager
def _emulator(latency: float) -> Iterator[Any]:
    """The emulator on a free loopback port, this process's settings pointed at it while the command runs.

    Polling mode (no STAGING_PUBLIC_URL): no web server runs in this process to take webhooks or
    serve the photo, so the photo goes through the emulator's Files API and the runner polls. The
    settings are restored on the way out, which matters when the command runs in-process (call_command).
    """
    from replicate_emulator import Emulator

    with (
        Emulator(api_token="r8_emulator_" + secrets.token_hex(8), port=0, latency=latency) as emulator,
        emulator_settings(emulator, STAGING_PUBLIC_URL=""),
    ):
        yield emulator
