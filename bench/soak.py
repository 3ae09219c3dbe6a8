"""The soak under faults as a benchmark: what the faults and a lost host cost, beside the same jobs without them.

The scenario and its invariants are the soak test's (`bench/scenarios/soak.py`), so the numbers
printed here come from runs that also proved what docs/architecture.md#never-pay-twice promises. The
deployment is production's shape: gunicorn (stagingsite/gunicorn.conf.py, 2 workers) as
STAGING_PUBLIC_URL, so webhooks and photo links go through the app server, and TWO real `qcluster`
children (2 workers each) on one PostgreSQL database, as two hosts. This process creates the jobs
and drives the scheduled tasks every SOAK_TICK seconds (why: see the scenario's docstring).

PostgreSQL: `python -m bench` runs on a throw-away SQLite database, so this benchmark makes a
throw-away PostgreSQL database of its own on the server of SOAK_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/postgres), runs itself there in a child
and drops it afterwards; with no server reachable it says so in one line and skips.

Two runs on one deployment and one emulator, SOAK_JOBS jobs each (default 40; `SOAK_JOBS=200` for
issue 8's soak) over every registry model:
- baseline: no faults, no crash;
- faults: the soak's mix (create 500/429, transient and moderated predictions, lost create answers,
  lost and duplicated webhooks), seeded (SOAK_SEED), and host-b SIGKILLed while attempts are in flight,
  then started again.
Both have the same jittered latency (0.3-1.0 s), so the ratios isolate the cost of the faults: wall
time, attempts per job (extra paid attempts come only from failed predictions) and latency.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench.scenarios import soak
from models_config import services as config_services
from replicate_emulator import Emulator
from tests.fixtures.photos import image_bytes

JOBS = int(os.environ.get("SOAK_JOBS", "40"))
TICK = float(os.environ.get("SOAK_TICK", "2"))
TIMEOUT = max(150.0, 2.0 * JOBS)

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
# The child on the scratch database: Django set up and migrated before this module is imported there.
CHILD = (
    "import django; django.setup(); from django.core.management import call_command; "
    "call_command('migrate', verbosity=0); from bench import soak; soak.run()"
)


def _one_run(emu: Emulator, photo: bytes, faults: dict[str, Any], victim: soak.QCluster | None) -> dict[str, Any]:
    emu.reset()
    emu.set_faults(**faults)
    since = timezone.now()
    began = time.perf_counter()
    job_ids = soak.create_jobs(JOBS, photo)
    elapsed, crash = soak.drive(job_ids, TIMEOUT, TICK, victim=victim)
    wall = time.perf_counter() - began
    emu.wait_for_webhooks(timeout=5)
    found = soak.check(emu, job_ids, since, crash)
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
    print(
        f"soak: {JOBS} jobs over every model, gunicorn (2 workers) + 2 qclusters (2 workers each) on PostgreSQL, "
        f"webhooks, tick {TICK:g} s, seed {soak.SEED}"
    )
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


def _run_here() -> None:
    """Both runs on this process's database (PostgreSQL)."""
    config_services.ensure_config_rows()
    photo = image_bytes(size=(640, 480), quality=90)
    log_dir = Path(tempfile.mkdtemp(prefix="staging-soak-logs-"))
    base_env = {**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    emu = soak.make_emulator("r8_bench_soak").start()
    try:
        with soak.deployment(emu, base_env, log_dir) as service:
            service.warm_up()
            baseline = _one_run(emu, photo, {}, victim=None)
            faulted = _one_run(emu, photo, soak.FAULTS, victim=service.clusters[1])
            tasks_run = service.tasks_run()
    finally:
        emu.stop()
    _report(baseline, faulted)
    print(f"  tasks run by each cluster: {tasks_run}")
    if baseline["found"].violations or faulted["found"].violations:
        print(f"  logs (gunicorn, host-a-*, host-b-*): {log_dir}")


def _server_and_scratch(server_url: str) -> tuple[str, str]:
    """The maintenance URL to create/drop from, and the scratch database's URL on the same server."""
    parts = urlsplit(server_url)
    scratch = f"staging_soak_{os.getpid()}"
    return urlunsplit(parts._replace(path="/postgres")), urlunsplit(parts._replace(path=f"/{scratch}"))


def run() -> None:
    """On PostgreSQL run here; else in a child on a throw-away PostgreSQL database (see the module docstring)."""
    if connection.vendor == "postgresql":
        _run_here()
        return
    maintenance, scratch_url = _server_and_scratch(os.environ.get("SOAK_DATABASE_URL", DEFAULT_SERVER))
    scratch = urlsplit(scratch_url).path.lstrip("/")
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{scratch}"')
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"soak: skipped, it needs PostgreSQL (SOAK_DATABASE_URL: a server to create a database on): {first}")
        return
    try:
        env = {**os.environ, "DATABASE_URL": scratch_url, "MEDIA_ROOT": tempfile.mkdtemp(prefix="staging-soak-media-")}
        subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=settings.BASE_DIR, check=False)
    finally:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
