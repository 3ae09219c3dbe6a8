"""The staging pipeline end to end against the emulator: throughput, and the service's CPU per job.

Throughput. N jobs, emulator latency L, W worker threads. The service's way: the W workers take
tasks from an in-memory queue standing in for django-q2's broker (`async_task` is redirected to it)
and run the real task functions: `submit_attempt` creates the prediction and returns, a poller thread
runs `sweeps.poll_in_flight` every POLL_INTERVAL (polling mode: no public URL, every in-flight
prediction is read each tick), and the `collect_outputs` tasks it queues download and store the
outputs. Wall time runs from the first submit to the last job succeeded.

Baseline, beside it in the same run: the Go seed's "blocking worker", W threads that each upload the
photo, create a prediction with the official client, `prediction.wait()` on it (same poll interval),
then download the output, before taking the next job. It is the right comparison because it is the
design being replaced, doing the same HTTP work minus our database and storage (which only favours
it): its throughput is W / latency, the service's is bounded by Replicate (create rate limit, 10/s)
rather than by W. Each run gets its own emulator, whose `creates_total` must equal N (nothing paid twice).

Overhead. CPU time of the thread running each step (`time.thread_time`: the emulator's threads,
though in this process, are not counted), split into create_job (photo check and storage), submit
(claim, config, Files API upload, create), poll (the poller's CPU divided by N; depends on ticks:
with webhooks it is one request per job instead), collect (download, decode, thumbnail, store).
Set BENCH_JOBS, BENCH_LATENCY, BENCH_WORKERS, or BENCH_QUICK=1 (8 jobs, 1.0 s) to change the size.
"""

from __future__ import annotations

import os
import queue
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import replicate
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from bench import blocking
from models_config import services as config_services
from models_config.registry import get_spec
from models_config.selectors import get_active_config
from replicate_emulator import Emulator
from staging import queue as staging_queue
from staging import services, sweeps, tasks
from staging.emulation import emulator_settings
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import image_bytes

SLUG = "flux-kontext-pro"
QUICK = os.environ.get("BENCH_QUICK") == "1"
JOBS = int(os.environ.get("BENCH_JOBS", 8 if QUICK else 24))
LATENCY = float(os.environ.get("BENCH_LATENCY", 1.0 if QUICK else 1.5))
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
POLL_INTERVAL = 0.25  # the poller's tick, and the client's poll interval in the baseline
TIMEOUT = 120.0
STEPS = ("create_job", "submit", "poll", "collect")


@contextmanager
def _emulator() -> Iterator[Emulator]:
    with Emulator(api_token="r8_bench", port=0, latency=LATENCY, jitter=0.0) as emu:
        yield emu


class Broker:
    """An in-memory task queue standing in for django-q2's: `async_task` puts, workers get."""

    def __init__(self) -> None:
        self.tasks: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()

    def async_task(self, func: str, *args: Any, **_options: Any) -> None:
        self.tasks.put((func.rsplit(".", 1)[-1], args))

    @contextmanager
    def installed(self) -> Iterator[None]:
        original = staging_queue.async_task  # the one place pipeline work is queued
        staging_queue.async_task = self.async_task
        try:
            yield
        finally:
            staging_queue.async_task = original


def _thread(target: Callable[[], None]) -> threading.Thread:
    def body() -> None:
        try:
            target()
        finally:
            connection.close()  # each thread has its own connection

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def _all_succeeded() -> bool:
    return Attempt.objects.filter(state=Attempt.State.SUCCEEDED).values("job").distinct().count() >= JOBS


def run_service(photo: bytes) -> dict[str, Any]:
    cpu: dict[str, list[float]] = defaultdict(list)
    broker = Broker()
    # Polling mode (no public URL): every in-flight prediction is read each tick.
    with _emulator() as emu, emulator_settings(emu, STAGING_PUBLIC_URL=""), broker.installed():
        for i in range(JOBS):  # before the clock: the jobs are waiting in the queue when workers start
            start = time.thread_time()
            services.create_job(SimpleUploadedFile(f"room{i}.jpg", photo, content_type="image/jpeg"), SLUG)
            cpu["create_job"].append(time.thread_time() - start)
        done = threading.Event()
        functions = {
            "submit_attempt": ("submit", tasks.submit_attempt),
            "collect_outputs": ("collect", tasks.collect_outputs),
            "poll_attempt": ("poll", tasks.poll_attempt),  # polling mode's due reads of one prediction
            "reconcile_attempt": ("reconcile", tasks.reconcile_attempt),
        }
        lock = threading.Lock()
        errors: list[str] = []

        def worker() -> None:
            while (item := broker.tasks.get()) is not None:
                step, func = functions[item[0]]
                start = time.thread_time()
                try:
                    func(*item[1])
                except Exception as exc:  # a task that raises must not stall the run: report it
                    errors.append(f"{step}: {exc!r}")
                with lock:
                    cpu[step].append(time.thread_time() - start)

        def poller() -> None:
            total = 0.0
            while not done.is_set():
                start = time.thread_time()
                sweeps.poll_in_flight()
                total += time.thread_time() - start  # the bench's own completion check is not counted
                if _all_succeeded():
                    done.set()
                else:
                    done.wait(POLL_INTERVAL)
            cpu["poll"].append(total)

        began, began_at = time.perf_counter(), timezone.now()
        threads = [_thread(worker) for _ in range(WORKERS)] + [_thread(poller)]
        finished = done.wait(TIMEOUT)
        wall = time.perf_counter() - began
        done.set()
        for _ in range(WORKERS):
            broker.tasks.put(None)
        for thread in threads:
            thread.join()
        creates = emu.counters()["creates_total"]
    attempts = Attempt.objects.filter(state=Attempt.State.SUCCEEDED)
    return {
        "wall": wall,
        "ok": finished,
        "ramp": (max((a.submitted_at for a in attempts), default=began_at) - began_at).total_seconds(),
        "creates": creates,
        "cpu": {step: sum(cpu[step]) / JOBS for step in STEPS},
        "submits": len(cpu["submit"]),
        "collects": len(cpu["collect"]),
        "predict_time": statistics.mean([a.predict_time for a in attempts if a.predict_time] or [float("nan")]),
        "errors": errors,
        "succeeded": StagingJob.objects.filter(attempts__state=Attempt.State.SUCCEEDED).distinct().count(),
    }


def run_blocking(photo: bytes) -> dict[str, Any]:
    """The seed's design: each worker waits on its prediction before taking the next job."""
    spec = get_spec(SLUG)
    config = spec.resolve_config(get_active_config(SLUG).config.model_dump(mode="json"), None)
    jobs: queue.Queue[int] = queue.Queue()
    for i in range(JOBS):
        jobs.put(i)
    done: list[int] = []
    with _emulator() as emu:

        def worker() -> None:
            client = replicate.Client(api_token=emu.api_token, base_url=emu.base_url)
            client.poll_interval = POLL_INTERVAL
            with httpx.Client(timeout=30) as http:
                while True:
                    try:
                        i = jobs.get_nowait()
                    except queue.Empty:
                        return
                    if blocking.stage_one(client, http, spec, config, photo, i, "modern"):
                        done.append(i)

        began = time.perf_counter()
        threads = [_thread(worker) for _ in range(WORKERS)]
        for thread in threads:
            thread.join(TIMEOUT)
        wall = time.perf_counter() - began
        creates = emu.counters()["creates_total"]
    return {"wall": wall, "ok": len(done) == JOBS, "creates": creates, "succeeded": len(done)}


def run() -> None:
    config_services.ensure_config_rows()
    photo = image_bytes(size=(1024, 768), quality=90)
    blocking = run_blocking(photo)
    service = run_service(photo)
    ratio = blocking["wall"] / service["wall"]
    print(
        f"pipeline: {JOBS} jobs ({SLUG}), emulator latency {LATENCY:g} s, {WORKERS} workers, poll {POLL_INTERVAL:g} s"
    )
    print(f"  {'design':<22}{'wall s':>8}{'jobs/s':>8}{'succeeded':>11}{'creates':>9}")
    for name, result in (("blocking (Go seed)", blocking), ("service (non-blocking)", service)):
        jobs_per_s = result["succeeded"] / result["wall"]
        row = f"{result['wall']:8.2f}{jobs_per_s:8.2f}{result['succeeded']:>8}/{JOBS:<2}{result['creates']:>9}"
        print(f"  {name:<22}{row}{'' if result['ok'] else '  INCOMPLETE'}")
    print(f"  throughput ratio      : {ratio:6.1f}x   (N/W = {JOBS / WORKERS:g}: the limit as latency >> submit ramp)")
    print(f"  service: all {JOBS} predictions created {service['ramp']:.2f} s after the first submit")
    cpu = service["cpu"]
    total = sum(cpu.values())
    predict = service["predict_time"]
    print(f"  service CPU per job (thread CPU; {service['submits']} submits, {service['collects']} collects):")
    print("    " + "  ".join(f"{step} {cpu[step] * 1000:.1f}" for step in STEPS) + f"  = {total * 1000:.1f} ms")
    for error in service["errors"][:5]:
        print(f"  task error: {error}")
    print(f"  predict time (emulator metrics): {predict * 1000:.0f} ms/job")
    print(f"  overhead / predict time: {total / predict:.3f}  (vs a 5 s real prediction: {total / 5:.4f})")
