"""The soak under faults, shared by `tests/staging/test_soak.py` and `bench/soak.py`: the scenario and its invariants.

One module for both, so the test and the benchmark prove the same promises (docs/architecture.md#never-pay-twice)
against the same fault mix; they differ only in size and in how they report. No pytest here: the
benchmark imports it too.

The deployment is production's shape on one machine: the app server (gunicorn, `AppServer`) is
`STAGING_PUBLIC_URL`, so webhooks and the photo links go through it; TWO `qcluster` processes share
one PostgreSQL queue as two hosts would, and one of them is SIGKILLed while attempts are in flight
and started again (`drive`): its claimed submits, pulled tasks and half-done collections must be
finished by the survivor's sweeps, with nothing created twice.

Why a "tick": django-q2 runs schedules from a 30 s loop and ours are once a minute, so a lost webhook
or a 429's wait would cost a minute or more each. The driver enqueues the scheduled task functions
itself every few seconds (the same functions, run by the real workers); the real schedules stay on.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django_q.models import Task
from django_q.tasks import async_task
from PIL import Image

from models_config.registry import REGISTRY
from replicate_emulator import Emulator
from replicate_emulator.faults import E005
from replicate_emulator.store import attempt_token
from staging import services
from staging.emulation import emulator_environ, emulator_settings
from staging.models import Attempt, StagingJob
from tests.fixtures.waiting import wait_until

from .appserver import AppServer, free_port
from .qcluster import QCluster

SEED = int(os.environ.get("SOAK_SEED", "20261124"))  # the dice are fixed; thread timing still varies the order
LATENCY, JITTER = 0.3, 0.7  # each prediction takes 0.3-1.0 s
THROTTLE_RESET = 1  # seconds a 429 names; the retry must wait at least this long
MAX_ATTEMPTS = 3
# The qcluster child's pipeline settings (as env strings); the driver's own process, which serves the
# webhooks and so also fails attempts and schedules retries, must use the same values.
PIPELINE_SETTINGS: dict[str, int] = {
    "STAGING_RETRY_BASE_SECONDS": 0,  # transient failures retry at once; a 429 still waits its reset
    "STAGING_POLL_AFTER_SECONDS": 2,  # a prediction silent this long is polled (its webhook was lost)
    "STAGING_RECONCILE_AFTER_SECONDS": 5,  # creates here answer in milliseconds
    "STAGING_MAX_ATTEMPTS": MAX_ATTEMPTS,
}
FAULT_RATES: dict[str, float] = {
    "create_500_rate": 0.10,  # refused: the same attempt sends it again, unpaid
    "create_429_rate": 0.05,  # refused, with a wait to honour
    "fail_rate": 0.05,  # E6716, transient: a new paid attempt
    "moderate_rate": 0.02,  # E005, permanent: the job fails, no retry
    "webhook_lost_rate": 0.20,
    "webhook_duplicate_rate": 0.10,
    "drop_after_create_rate": 0.03,  # created, but the answer is lost: reconcile must adopt it
}
# One of each up front, so every kind is injected in every run whatever the dice say.
FAULT_FLOOR: dict[str, int] = {
    "moderate": 1,
    "fail_predictions": 1,
    "create_429": 1,
    "create_500": 1,
    "drop_after_create": 1,
    "webhook_lost": 1,
    "webhook_duplicate": 1,
}
FAULTS: dict[str, Any] = {**FAULT_RATES, **FAULT_FLOOR, "throttle_reset_seconds": THROTTLE_RESET}
TICK_TASKS = ("staging.tasks.poll_in_flight", "staging.tasks.retry_due", "staging.tasks.enforce_deadlines")
# A refused create (429, 5xx, connection refused) is sent again by the same attempt
# (docs/architecture.md#refused-creates): an attempt may end with one of these messages only past its deadline.
REFUSAL_MARKS = ("rate limit", "server error", "retrying later", "could not be created within")


def make_emulator(api_token: str, *, seed: int = SEED) -> Emulator:
    """A seeded emulator (not started) with jittered predictions and fast webhook redelivery, no faults yet."""
    return Emulator(api_token=api_token, latency=LATENCY, jitter=JITTER, seed=seed, webhook_backoff=0.05)


def pipeline_env() -> dict[str, str]:
    return {name: str(value) for name, value in PIPELINE_SETTINGS.items()}


@dataclass
class Deployment:
    """The service as the soak runs it: one app server, two queue clusters on one database."""

    app: AppServer
    clusters: tuple[QCluster, QCluster]

    def logs(self) -> str:
        return "\n".join([f"--- gunicorn\n{self.app.logs()}", *(f"--- {c.name}\n{c.logs()}" for c in self.clusters)])

    def tasks_run(self) -> dict[str, int]:
        """Tasks each cluster's workers started (django-q logs "… processing <task> …" at INFO)."""
        return {c.name: c.log_text().count(" processing ") for c in self.clusters}

    def warm_up(self, timeout: float = 60) -> None:
        """Wait until both clusters have run a task: the crash must hit a host that was working, and no
        run should pay for the start-up. RuntimeError with the logs if one never does."""

        def both_ran() -> bool:
            if all(self.tasks_run().values()):
                return True
            async_task("staging.tasks.retry_due")
            return False

        if not wait_until(both_ran, timeout, step=0.5):
            raise RuntimeError(f"a qcluster ran no task within {timeout:g} s:\n{self.logs()}")


@contextmanager
def deployment(emu: Emulator, base_env: dict[str, str], log_dir: Path, workers: int = 2) -> Iterator[Deployment]:
    """gunicorn as STAGING_PUBLIC_URL and two `qcluster`s ("host-a", "host-b"; started, not yet waited for),
    all pointed at `emu` with `PIPELINE_SETTINGS`, and this process too (it creates the jobs and checks).

    `base_env` must carry this process's DATABASE_URL and MEDIA_ROOT: every child shares the rows and
    the files. Everything started is stopped on exit, even by an exception.
    """
    port = free_port()
    values = {"STAGING_PUBLIC_URL": f"http://127.0.0.1:{port}", **PIPELINE_SETTINGS}
    env = {**base_env, **emulator_environ(emu, **values), "Q_WORKERS": str(workers), "LOG_LEVEL": "INFO"}
    app = AppServer(env, log_dir, port=port)
    clusters = (QCluster(env, log_dir, name="host-a"), QCluster(env, log_dir, name="host-b"))
    with emulator_settings(emu, **values):
        try:
            app.start()
            for cluster in clusters:
                cluster.start()
            yield Deployment(app, clusters)
        finally:
            for cluster in clusters:
                cluster.stop()
            app.stop()


def create_jobs(count: int, photo: bytes) -> list[int]:
    """`count` jobs, round-robin over every registry model; returns their ids."""
    slugs = list(REGISTRY)
    ids = []
    for i in range(count):
        upload = SimpleUploadedFile(f"room{i}.jpg", photo, content_type="image/jpeg")
        ids.append(services.create_job(upload, slugs[i % len(slugs)], style=f"style {i}").pk)
    return ids


def tick() -> None:
    """One round of the scheduled tasks, queued for the real workers (see the module docstring)."""
    for func in TICK_TASKS:
        async_task(func)


def open_jobs(job_ids: Iterable[int]) -> int:
    return Attempt.objects.filter(job_id__in=list(job_ids)).exclude(state__in=Attempt.TERMINAL).count()


@dataclass
class Crash:
    """What the SIGKILL of one cluster hit: the attempts of the jobs open at that moment, by state."""

    open_by_state: Counter[str] = field(default_factory=Counter)
    killed_after: float | None = None  # seconds into the run
    restarted_after: float | None = None

    @property
    def in_flight(self) -> int:
        """Attempts mid-way at the kill: claimed, at Replicate, or collecting."""
        return sum(n for state, n in self.open_by_state.items() if state in Attempt.RUNNING)

    def describe(self) -> str:
        if self.killed_after is None:
            return "no cluster was killed"
        states = ", ".join(f"{state} {n}" for state, n in sorted(self.open_by_state.items()))
        back = f"restarted at {self.restarted_after:.1f} s" if self.restarted_after is not None else "never restarted"
        return f"SIGKILL at {self.killed_after:.1f} s with {self.in_flight} attempts in flight ({states}); {back}"


def kill_threshold(jobs: int) -> int:
    """How many attempts must be mid-way before the kill, so that it hits real work."""
    return max(2, min(6, jobs // 4))


def drive(
    job_ids: list[int], timeout: float, tick_every: float, victim: QCluster | None = None
) -> tuple[float | None, Crash]:
    """Seconds until every attempt of the jobs is terminal (None on timeout), ticking every `tick_every` s.

    With a `victim`, that cluster is SIGKILLed (the whole process group, as a host dies) once
    `kill_threshold` attempts are mid-way and it has taken tasks of this run, and started again once
    it has been down 2 s and another attempt has ended (or after 5 s): the other cluster carries on alone meanwhile.
    """
    began = time.monotonic()
    next_tick = began + tick_every
    crash = Crash()
    ended_at_kill = 0
    victim_ran = victim.log_text().count(" processing ") if victim is not None else 0  # tasks before this run

    def ended() -> int:
        return Attempt.objects.filter(job_id__in=job_ids, state__in=Attempt.TERMINAL).count()

    def settled() -> bool:
        nonlocal next_tick, ended_at_kill
        now = time.monotonic()
        if tick_every > 0 and now >= next_tick:
            tick()
            next_tick = now + tick_every
        if victim is not None and crash.killed_after is None:
            open_states = Counter(
                Attempt.objects.filter(job_id__in=job_ids)
                .exclude(state__in=Attempt.TERMINAL)
                .values_list("state", flat=True)
            )
            running = sum(n for state, n in open_states.items() if state in Attempt.RUNNING)
            if running >= kill_threshold(len(job_ids)) and victim.log_text().count(" processing ") > victim_ran:
                victim.kill()
                crash.open_by_state, crash.killed_after = open_states, now - began
                ended_at_kill = ended()
                return False
        elif victim is not None and crash.restarted_after is None:
            down = now - began - (crash.killed_after or 0)
            if (down >= 2 and ended() > ended_at_kill) or down >= 5:
                victim.start()
                crash.restarted_after = now - began
            return False
        return open_jobs(job_ids) == 0

    elapsed = time.monotonic() - began if wait_until(settled, timeout, step=0.2) else None
    return elapsed, crash


def wait_terminal(job_ids: list[int], timeout: float, tick_every: float) -> float | None:
    """`drive` without a crash."""
    return drive(job_ids, timeout, tick_every)[0]


@dataclass
class Prediction:
    """What the emulator (Replicate) knows about one prediction: the truth the service is checked against."""

    id: str
    token: str
    status: str
    error: str | None
    outputs: list[bytes | None]


def emulator_predictions(emu: Emulator) -> dict[str, Prediction]:
    with emu.store.lock:
        return {
            r.id: Prediction(
                r.id,
                attempt_token(r.webhook),
                r.status,
                r.error,
                [(emu.store.outputs.get(key) or (None,))[0] for key in r.output_keys],
            )
            for r in emu.store.predictions.values()
        }


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    jobs_by_status: Counter[str] = field(default_factory=Counter)
    attempts_by_state: Counter[str] = field(default_factory=Counter)
    creates: int = 0
    max_creates_per_token: int = 0
    orphans: int = 0  # predictions whose attempt was given up first, and that were canceled at Replicate
    moderated: int = 0
    failed_moderated: int = 0  # failed jobs whose last attempt's prediction was moderated
    failed_gave_up: int = 0  # failed jobs whose last attempt was the last transient failure allowed
    crash: Crash = field(default_factory=Crash)
    retried_jobs: int = 0
    retried_and_succeeded: int = 0
    outputs_checked: int = 0
    task_failures: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    webhooks: tuple[int, int] = (0, 0)
    latencies: list[float] = field(default_factory=list)  # succeeded jobs: created -> outputs stored

    def fail(self, message: str) -> None:
        self.violations.append(message)


def _check_outputs(attempt: Attempt, truth: Prediction, found: Findings) -> None:
    """Replicate says succeeded: the attempt succeeded and every output is stored, byte for byte."""
    if attempt.state != Attempt.State.SUCCEEDED:
        found.fail(f"attempt {attempt.pk}: prediction {truth.id} succeeded but the attempt is {attempt.state}")
        return
    images = list(attempt.images.order_by("index"))
    if [image.index for image in images] != list(range(len(truth.outputs))):
        found.fail(f"attempt {attempt.pk}: stored outputs {[i.index for i in images]}, Replicate made {truth.outputs}")
        return
    for image, expected in zip(images, truth.outputs, strict=True):
        path = Path(image.file.path)
        data = path.read_bytes() if path.is_file() else None
        if data is None:
            found.fail(f"attempt {attempt.pk}: output {image.index} file {path} is missing")
        elif hashlib.sha256(data).hexdigest() != image.checksum or len(data) != image.size:
            found.fail(f"attempt {attempt.pk}: output {image.index} bytes do not match the stored checksum/size")
        elif expected is not None and data != expected:
            found.fail(f"attempt {attempt.pk}: output {image.index} differs from the bytes Replicate served")
        elif (problem := _undecodable(path)) is not None:
            found.fail(f"attempt {attempt.pk}: output {image.index} does not decode as an image: {problem}")
        else:
            found.outputs_checked += 1


def _undecodable(path: Path) -> str | None:
    """None when the stored file decodes in full as an image, else why not."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # any decoder error is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_attempt(attempt: Attempt, later: bool, found: Findings) -> None:
    """Failures: permanent ones end the job, transient ones retry (bounded), a 429's wait is honoured."""
    if attempt.state != Attempt.State.FAILED:
        return
    if attempt.error_class == "permanent" and later:
        found.fail(f"attempt {attempt.pk} failed permanently ({attempt.error!r}) but the job was retried")
    if attempt.error_class == "transient" and not later and attempt.number < MAX_ATTEMPTS:
        found.fail(f"attempt {attempt.pk} failed transiently as number {attempt.number} and was not retried")
    if attempt.error_class == "transient" and not later and "Gave up" not in attempt.error:
        found.fail(f"attempt {attempt.pk} is the job's last, failed transiently, without saying it gave up")
    if any(mark in attempt.error for mark in REFUSAL_MARKS) and not _past_deadline(attempt):
        found.fail(f"attempt {attempt.pk} failed for refused creates alone, before its deadline: {attempt.error!r}")


def _past_deadline(attempt: Attempt) -> bool:
    return bool(attempt.deadline and attempt.finished_at and attempt.finished_at >= attempt.deadline)


def _explain_failed_job(job: StagingJob, last: Attempt, truth: dict[str, Prediction], found: Findings) -> None:
    """A failed job failed for a reason the soak injected: moderation, or transient failures up to the limit."""
    prediction = truth.get(last.prediction_id or "")
    if prediction is not None and prediction.error == E005 and last.error_class == "permanent":
        found.failed_moderated += 1
    elif last.error_class == "transient" and last.number >= MAX_ATTEMPTS and "Gave up" in last.error:
        found.failed_gave_up += 1
    else:
        found.fail(f"job {job.pk} failed neither moderated nor after {MAX_ATTEMPTS} transient failures: {last.error!r}")


def check(emu: Emulator, job_ids: list[int], since: datetime, crash: Crash | None = None) -> Findings:
    """Every invariant of the soak, as a list of violations (empty: all hold) plus the figures to print."""
    found = Findings(crash=crash or Crash())
    truth = emulator_predictions(emu)
    counters = emu.counters()
    found.creates = counters["creates_total"]
    found.faults = counters["faults_injected"]
    found.webhooks = (counters["webhooks_sent"], counters["webhooks_failed"])
    by_token = counters["creates_by_token"]
    found.max_creates_per_token = max(by_token.values(), default=0)
    attempts = list(Attempt.objects.filter(job_id__in=job_ids).order_by("job_id", "number"))
    tokens = {attempt.token: attempt for attempt in attempts}

    for token, creates in sorted(by_token.items()):
        owner = tokens.get(token)
        if owner is None:
            found.fail(f"{creates} create(s) carry token {token!r}, which no attempt of these jobs has")
        elif creates != 1:
            found.fail(f"attempt {owner.pk} (job {owner.job_id}) created {creates} predictions")
    for prediction in truth.values():
        owner = tokens.get(prediction.token)
        if owner is None or owner.prediction_id == prediction.id:
            continue
        # The code's one allowed exception: an attempt given up before its create's answer was known
        # (services.adopt_prediction / apply_prediction_update cancel such a late prediction). A lost
        # create now goes back to the queue, so only a deadline can give an attempt up here.
        orphan = owner.prediction_id is None and owner.is_terminal and prediction.status == "canceled"
        if orphan and _past_deadline(owner):
            found.orphans += 1
        else:
            found.fail(
                f"prediction {prediction.id} ({prediction.status}) of attempt {owner.pk} ({owner.state}, "
                f"prediction_id={owner.prediction_id}) is not the attempt's and was not given up and canceled"
            )
    with_id = [a for a in attempts if a.prediction_id]
    for attempt in with_id:
        if (creates := emu.creates_for_token(attempt.token)) != 1:
            found.fail(f"attempt {attempt.pk} (job {attempt.job_id}) has a prediction and {creates} creates")
    if found.creates != len(with_id) + found.orphans:
        found.fail(
            f"creates_total {found.creates} != {len(with_id)} attempts with a prediction + {found.orphans} orphans"
        )

    last_number = {a.job_id: a.number for a in attempts}  # ordered by number: the last one wins
    for attempt in attempts:
        found.attempts_by_state[attempt.state] += 1
        later = attempt.number < last_number[attempt.job_id]
        prediction = truth.get(attempt.prediction_id or "")
        if attempt.prediction_id and prediction is None:
            found.fail(f"attempt {attempt.pk} records prediction {attempt.prediction_id}, unknown to Replicate")
        if not attempt.is_terminal:
            found.fail(f"attempt {attempt.pk} (job {attempt.job_id}) is still {attempt.state}")
        if prediction is not None and prediction.status == "succeeded":
            _check_outputs(attempt, prediction, found)
        if prediction is not None and prediction.error == E005:
            found.moderated += 1
            clear = "flagged" in attempt.error and "sensitive" in attempt.error
            if attempt.state != Attempt.State.FAILED or attempt.error_class != "permanent" or not clear or later:
                found.fail(
                    f"moderated attempt {attempt.pk}: {attempt.state}/{attempt.error_class}, retried={later}, "
                    f"message {attempt.error!r}"
                )
        _check_attempt(attempt, later, found)

    for job in StagingJob.objects.filter(pk__in=job_ids):
        status = job.status
        found.jobs_by_status[status] += 1
        if status not in Attempt.TERMINAL:
            found.fail(f"job {job.pk} ({job.model_slug}) ended the soak {status}")
        mine = [a for a in attempts if a.job_id == job.pk]
        if len(mine) > 1:
            found.retried_jobs += 1
            found.retried_and_succeeded += status == "succeeded"
        done = [a.finished_at for a in mine if a.state == Attempt.State.SUCCEEDED and a.finished_at]
        if done:
            found.latencies.append((max(done) - job.created_at).total_seconds())
        if status == "failed" and mine:
            _explain_failed_job(job, mine[-1], truth, found)
    counted = sum(found.jobs_by_status[status] for status in Attempt.TERMINAL)
    if counted != len(job_ids):
        found.fail(f"succeeded + failed + canceled = {counted}, not {len(job_ids)}: {dict(found.jobs_by_status)}")
    failures = Task.objects.filter(success=False, started__gte=since)
    found.task_failures = failures.count()
    for task in failures[:5]:
        found.fail(f"queue task {task.func}{task.args} raised: {str(task.result)[:300]}")
    return found


def summary(found: Findings, *, elapsed: float | None, header: str) -> list[str]:
    """The lines printed by the test (with -s) and the benchmark."""
    jobs = "  ".join(f"{status} {n}" for status, n in sorted(found.jobs_by_status.items()))
    states = ", ".join(f"{state} {n}" for state, n in sorted(found.attempts_by_state.items()))
    faults = ", ".join(f"{kind} {n}" for kind, n in sorted(found.faults.items())) or "none"
    took = f"all terminal after {elapsed:.1f} s" if elapsed is not None else "NOT all terminal"
    return [
        f"{header}: {took}",
        f"  jobs      : {jobs} (failed: moderated {found.failed_moderated}, gave up after {MAX_ATTEMPTS} "
        f"transient failures {found.failed_gave_up})",
        f"  crash     : {found.crash.describe()}",
        f"  attempts  : {sum(found.attempts_by_state.values())} ({states}); jobs retried {found.retried_jobs}, "
        f"of which succeeded {found.retried_and_succeeded}; moderated {found.moderated}",
        f"  creates   : {found.creates} total, max per attempt token {found.max_creates_per_token}, "
        f"orphans canceled {found.orphans}; outputs verified byte for byte {found.outputs_checked}",
        f"  faults    : {faults}",
        f"  webhooks  : {found.webhooks[0]} delivered, {found.webhooks[1]} given up; queue task failures "
        f"{found.task_failures}",
        "  invariants: " + ("all hold" if not found.violations else f"{len(found.violations)} VIOLATED"),
        *(f"    - {violation}" for violation in found.violations[:20]),
    ]
