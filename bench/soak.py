"""The soak under faults as a benchmark: what the faults cost, beside the same jobs without them.

The scenario and its invariants are the soak test's (`bench/scenarios/soak.py`), so the numbers
printed here come from runs that also proved what docs/architecture.md#never-pay-twice promises. A REAL `qcluster` child
(2 workers) runs against the bench's SQLite database; this process serves the webhooks and the photos
(Django's threaded WSGI server on a free loopback port, STAGING_PUBLIC_URL pointing at it) and drives
the scheduled tasks every SOAK_TICK seconds (why: see the scenario's docstring).

Two runs on one cluster and one emulator, SOAK_JOBS jobs each (default 40) over every registry model:
- baseline: no faults;
- faults: the soak's mix (failed and moderated predictions, create 503/429, lost create answers, lost
  and duplicated webhooks), seeded (SOAK_SEED).
Both have the same jittered latency (0.3-1.0 s), so the ratios isolate the cost of the faults: wall
time, attempts per job (extra paid attempts come only from failed predictions) and latency.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.urls import re_path
from django.utils import timezone
from django.views.static import serve
from django_q.models import Task
from django_q.tasks import async_task

from bench.scenarios import soak
from bench.scenarios.qcluster import QCluster
from models_config import services as config_services
from replicate_emulator import Emulator
from staging.emulation import emulator_environ, emulator_settings
from stagingsite.urls import urlpatterns as project_urlpatterns
from tests.fixtures.loopback import loopback_server
from tests.fixtures.photos import image_bytes
from tests.fixtures.waiting import wait_until

JOBS = int(os.environ.get("SOAK_JOBS", "40"))
TICK = float(os.environ.get("SOAK_TICK", "2"))
TIMEOUT = 150.0

# The in-process server's URLs: the project's plus the photos, which the emulator fetches by URL.
urlpatterns = [*project_urlpatterns, re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per webhook would bury the results
        pass


def _web_server() -> AbstractContextManager[str]:
    """Django on a free loopback port in threads of this process; yields its base URL."""
    return loopback_server(_QuietHandler, ThreadedWSGIServer, WSGIHandler())


def _warm_up(cluster: QCluster) -> None:
    """Wait until the cluster has run one task, so neither run pays for its start-up."""
    task_id = async_task("staging.tasks.retry_due")
    if not wait_until(lambda: Task.objects.filter(id=task_id).exists(), timeout=60):
        raise RuntimeError(f"qcluster ran no task within 60 s:\n{cluster.logs()}")


def _one_run(emu: Emulator, photo: bytes, faults: dict[str, Any]) -> dict[str, Any]:
    emu.reset()
    emu.set_faults(**faults)
    since = timezone.now()
    began = time.perf_counter()
    job_ids = soak.create_jobs(JOBS, photo)
    elapsed = soak.wait_terminal(job_ids, TIMEOUT, TICK)
    wall = time.perf_counter() - began
    emu.wait_for_webhooks(timeout=5)
    found = soak.check(emu, job_ids, since)
    attempts = sum(found.attempts_by_state.values())
    reached = found.creates - found.orphans  # attempts that got a prediction (checked against the DB)
    quantiles = statistics.quantiles(found.latencies, n=20) if len(found.latencies) > 1 else [float("nan")] * 19
    return {
        "found": found,
        "elapsed": elapsed,
        "wall": wall,
        "jobs_per_s": JOBS / wall,
        "attempts_per_job": attempts / JOBS,
        "creates_per_attempt": found.creates / reached if reached else float("nan"),
        "creates_per_job": found.creates / JOBS,
        "p50": statistics.median(found.latencies) if found.latencies else float("nan"),
        "p95": quantiles[18],
    }


def _report(baseline: dict[str, Any], faulted: dict[str, Any]) -> None:
    print(f"soak: {JOBS} jobs over every model, real qcluster (2 workers), webhooks, tick {TICK:g} s, seed {soak.SEED}")
    columns = [
        ("wall s", "wall", "8.2f"),
        ("jobs/s", "jobs_per_s", "8.2f"),
        ("attempts/job", "attempts_per_job", "13.2f"),
        ("creates/attempt", "creates_per_attempt", "16.2f"),
        ("p50 s", "p50", "7.2f"),
        ("p95 s", "p95", "7.2f"),
    ]
    print(f"  {'run':<10}" + "".join(f"{title:>{fmt.split('.')[0]}}" for title, _, fmt in columns) + "  succeeded")
    for name, result in (("baseline", baseline), ("faults", faulted)):
        cells = "".join(f"{result[key]:{fmt}}" for _, key, fmt in columns)
        print(f"  {name:<10}{cells}  {result['found'].jobs_by_status['succeeded']:>5}/{JOBS}")
    ratios = {"time": "wall", "attempts": "attempts_per_job", "creates": "creates_per_job", "p50": "p50", "p95": "p95"}
    cost = ", ".join(f"{name} {faulted[key] / baseline[key]:.2f}x" for name, key in ratios.items())
    print(f"  cost of faults (faults / baseline): {cost}")
    for name, result in (("baseline", baseline), ("faults", faulted)):
        for line in soak.summary(result["found"], elapsed=result["elapsed"], header=f"  {name}"):
            print(f"  {line}" if line.startswith("  ") else line)


def run() -> None:
    config_services.ensure_config_rows()
    photo = image_bytes(size=(640, 480), quality=90)
    log_dir = Path(settings.MEDIA_ROOT).parent
    emu = soak.make_emulator("r8_bench_soak").start()
    try:
        with _web_server() as public_url:
            values = {"STAGING_PUBLIC_URL": public_url, **soak.PIPELINE_SETTINGS}
            env = {**os.environ, **emulator_environ(emu, **values), "Q_WORKERS": "2", "LOG_LEVEL": "INFO"}
            cluster = QCluster(env, log_dir)
            with emulator_settings(emu, ROOT_URLCONF=__name__, **values):
                cluster.start()
                try:
                    _warm_up(cluster)
                    baseline = _one_run(emu, photo, {})
                    faulted = _one_run(emu, photo, soak.FAULTS)
                finally:
                    cluster.stop()
    finally:
        emu.stop()
    _report(baseline, faulted)
    if baseline["found"].violations or faulted["found"].violations:
        print(f"  qcluster logs: {log_dir}/qcluster-*.log")
