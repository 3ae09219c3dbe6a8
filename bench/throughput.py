"""Throughput through the real stack against Replicate's create ceiling, and the blocking design beside it.

Issue 8's scenario: N jobs (`BENCH_JOBS`, default 500; `BENCH_QUICK=1`: 60) POSTed to `/api/v1/jobs`
over HTTP by `BENCH_CLIENTS` client threads (default 8) with a staff API token; `manage.py serve`
(gunicorn, default settings) and one `qcluster` (2 workers) on a fresh PostgreSQL database
(`bench/stack.py`); webhooks to the service's own server; the emulator with 5 s predictions and 600
creates a minute. The service's own create pacer (STAGING_CREATE_RATE, 600/m by default) spaces the
creates, so the reference is the create ceiling: N / 10 creates a second, plus the last prediction's
5 s (the pacer's burst, STAGING_CREATE_BURST at once after an idle spell, can beat it by up to 5 s).
Wall time runs from the first POST to the moment the last job succeeded (its attempt's `finished_at`:
outputs stored).

Baseline, in the same run and against the same emulator: the blocking design (W = 2 threads that
each upload the photo, create with the official client, `prediction.wait()` with the client's default
poll interval, and download the output before taking the next job) on a subset (`BENCH_BASELINE_JOBS`,
default 20; 6 in quick mode), extrapolated to N: it is bound to W jobs per prediction time whatever N,
so its time per job is what it would keep doing.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any

import httpx
import replicate

from bench import blocking, stack
from models_config import services as config_services
from models_config.registry import get_spec
from models_config.selectors import get_active_config
from replicate_emulator import Emulator
from tests.fixtures.photos import image_bytes
from tests.fixtures.waiting import wait_until

QUICK = os.environ.get("BENCH_QUICK") == "1"
JOBS = int(os.environ.get("BENCH_JOBS", 60 if QUICK else 500))
BASELINE_JOBS = int(os.environ.get("BENCH_BASELINE_JOBS", 6 if QUICK else 20))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 8))
LATENCY = 5.0
CREATES_PER_MINUTE = 600
WORKERS = 2
CEILING_TARGET = 0.95
RATIO_TARGET = 23.0


def ceiling_seconds(jobs: int) -> float:
    """The wall time of evenly paced creates at 10 a second, then the last prediction's latency."""
    return jobs / (CREATES_PER_MINUTE / 60) + LATENCY


def post_jobs(st: stack.Stack, photo: bytes, count: int, clients: int) -> dict[str, Any]:
    """POST `count` jobs from `clients` threads; returns the ids, the answers that were not 201, and timings."""
    todo: queue.Queue[int] = queue.Queue()
    for i in range(count):
        todo.put(i)
    ids: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with st.client() as http:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    answer = http.post(
                        "/api/v1/jobs",
                        data={"model": stack.SLUG, "style": f"style {i}"},
                        files={"image": (f"room{i}.jpg", photo, "image/jpeg")},
                    )
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    if answer.status_code == 201:
                        ids.append(int(answer.json()["id"]))
                    else:
                        errors.append(f"{answer.status_code}: {answer.text[:200]}")

    began = time.time()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"ids": ids, "errors": errors, "began": began, "posted": time.time() - began}


def warm_up(st: stack.Stack, photo: bytes) -> int:
    """One job through every part (gunicorn workers, queue, webhook, collect); returns its id."""
    result = post_jobs(st, photo, 1, 1)
    if not result["ids"]:
        raise RuntimeError(f"the warm-up job was refused: {result['errors']}; see {st.log}")
    job_id = result["ids"][0]
    with st.db() as conn:
        if not wait_until(lambda: stack.succeeded_since(conn, job_id - 1)[0] >= 1, timeout=120, step=0.25):
            raise RuntimeError(f"the warm-up job did not succeed within 120 s; see {st.log}")
    return job_id


def run_service(st: stack.Stack, emu: Emulator, photo: bytes, after_job: int) -> dict[str, Any]:
    creates_before = emu.counters()["creates_total"]
    errors_before = st.server_errors()
    with st.db() as conn:
        failed_before = stack.failed_tasks(conn)
        st.reset_steps()
        posted = post_jobs(st, photo, JOBS, CLIENTS)
        expected = len(posted["ids"])
        timeout = ceiling_seconds(JOBS) * 3 + 120
        finished = wait_until(lambda: stack.succeeded_since(conn, after_job)[0] >= expected, timeout, step=0.25)
        succeeded, last_at = stack.succeeded_since(conn, after_job)
        failed_tasks = stack.failed_tasks(conn) - failed_before
        last_create = conn.execute(
            "SELECT extract(epoch FROM max(submitted_at)) FROM staging_attempt WHERE job_id > %s", (after_job,)
        ).fetchone()
    emu.wait_for_webhooks(timeout=10)
    wall = (last_at - posted["began"]) if last_at is not None and finished else float("nan")
    return {
        "wall": wall,
        "ok": finished and expected == JOBS,
        "succeeded": succeeded,
        "posted": posted["posted"],
        "post_errors": posted["errors"],
        "server_errors": st.server_errors() - errors_before,
        "failed_tasks": failed_tasks,
        "creates": emu.counters()["creates_total"] - creates_before,
        "last_create": (float(last_create[0]) - posted["began"]) if last_create and last_create[0] else float("nan"),
        "steps": st.steps(),
    }


def run_blocking(emu: Emulator, photo: bytes, count: int) -> dict[str, Any]:
    """The seed's design: W threads, each waiting on its prediction before taking the next job."""
    spec = get_spec(stack.SLUG)
    config = spec.resolve_config(get_active_config(stack.SLUG).config.model_dump(mode="json"), None)
    todo: queue.Queue[int] = queue.Queue()
    for i in range(count):
        todo.put(i)
    done: list[int] = []

    def worker() -> None:
        client = replicate.Client(api_token=emu.api_token, base_url=emu.base_url)  # default poll interval
        with httpx.Client(timeout=30) as http:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                if blocking.stage_one(client, http, spec, config, photo, i, f"style {i}"):
                    done.append(i)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"wall": wall, "succeeded": len(done), "per_job": wall / max(len(done), 1)}


def run() -> None:
    config_services.ensure_config_rows()  # this process's own (SQLite) config, for the baseline's input
    photo = image_bytes(size=(1024, 768), quality=90)
    emu = Emulator(api_token="r8_bench_throughput", latency=LATENCY, jitter=0.0, workers=32)
    emu.set_faults(create_rate_limit=CREATES_PER_MINUTE)
    emu.start()
    try:
        with stack.running_stack(emu) as st:
            warm_id = warm_up(st, photo)
            blocking = run_blocking(emu, photo, BASELINE_JOBS)
            service = run_service(st, emu, photo, warm_id)
    except stack.StackUnavailable as exc:
        print(f"throughput: skipped: {exc}")
        return
    finally:
        emu.stop()
    report(service, blocking)


def report(service: dict[str, Any], blocking: dict[str, Any]) -> None:
    ceiling = ceiling_seconds(JOBS)
    wall = service["wall"]
    extrapolated = blocking["per_job"] * JOBS
    print(
        f"throughput: {JOBS} jobs over HTTP ({stack.SLUG}), emulator {LATENCY:g} s predictions and "
        f"{CREATES_PER_MINUTE} creates/min, PostgreSQL, manage.py serve (gunicorn) + qcluster ({WORKERS} workers), "
        f"webhooks, {CLIENTS} client threads"
    )
    errors = len(service["post_errors"])
    print(
        f"  posts     : {JOBS - errors} x 201 in {service['posted']:.1f} s; refused or failed {errors}; "
        f"5xx in the access log {service['server_errors']}; failed queue tasks {service['failed_tasks']}"
    )
    for error in service["post_errors"][:5]:
        print(f"    - {error}")
    print(
        f"  service   : wall {wall:.1f} s (first POST -> last job succeeded), {JOBS / wall:.2f} jobs/s, "
        f"succeeded {service['succeeded']}/{JOBS}, creates {service['creates']} (must be {JOBS})"
        + ("" if service["ok"] else "  INCOMPLETE")
    )
    print(
        f"  ceiling   : {ceiling:.1f} s (N/10 + {LATENCY:g} s): {ceiling / wall:.1%} of it "
        f"(target >= {CEILING_TARGET:.0%})"
    )
    tasks = {name: entry for (kind, name), entry in service["steps"].items() if kind == "task"}
    busy = sum(entry[2] for entry in tasks.values()) / 1000
    print(
        f"  where     : last create {service['last_create']:.1f} s after the first POST (at 10/s: {JOBS / 10:g} s); "
        f"queue tasks run: "
        + ", ".join(
            f"{name} {int(count)} ({cpu / max(count, 1):.0f} ms CPU, {wall_ms / max(count, 1):.0f} ms wall each)"
            for name, (count, cpu, wall_ms) in sorted(tasks.items())
        )
        + f"; workers busy {busy:.1f} s of {WORKERS * wall:.1f} s"
    )
    print(
        f"  blocking  : {blocking['succeeded']}/{BASELINE_JOBS} jobs in {blocking['wall']:.1f} s with {WORKERS} "
        f"threads = {blocking['per_job']:.2f} s/job -> {JOBS} jobs ~ {extrapolated:.0f} s"
    )
    print(f"  ratio     : {extrapolated / wall:.1f}x the blocking design (target > {RATIO_TARGET:g}x)")
