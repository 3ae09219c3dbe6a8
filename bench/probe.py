"""CPU time of each queue task and each web request inside the benchmark stack, written per process.

`bench/own_cost.py` wants the service's CPU per job split by step, and /proc over the process trees
mixes that with idle work (the cluster's pusher polling the queue every `poll`, the scheduler, gunicorn's
heartbeats) and with django-q2's own bookkeeping. With `DJANGO_SETTINGS_MODULE=bench.probe_settings`
the stack's processes record, for every task function (django-q2's `pre_execute` and
`post_execute_in_worker` signals) and every request (a middleware), the CPU the process spent on it
(`time.process_time` in a worker, which runs one task at a time; `time.thread_time` in a gunicorn
thread), one line each in `$BENCH_PROBE_DIR/<pid>.tsv`: kind, name, CPU ms, wall ms.

With `BENCH_PROBE_PROFILE=1` each process (each gunicorn thread) also runs pyinstrument over every task
or request and keeps the combined profile in `$BENCH_PROBE_DIR/profile-<kind>-<pid>-<thread>.txt`
(rewritten every 20 of them): where the time goes inside the real stack, on PostgreSQL. pyinstrument
samples wall time; `BENCH_PROBE_PROFILE=cpu` runs cProfile on the thread's CPU clock instead and keeps
`….prof` files (`python -m pstats`).
"""

from __future__ import annotations

import cProfile
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.http import HttpRequest, HttpResponse

_started: list[tuple[float, float]] = []
_local = threading.local()
PROFILE_EVERY = 20


def _profile_start() -> None:
    mode = os.environ.get("BENCH_PROBE_PROFILE")
    if mode not in ("1", "cpu"):
        return
    if getattr(_local, "profiler", None) is None:
        if mode == "cpu":
            _local.profiler = cProfile.Profile(time.thread_time)
        else:
            from pyinstrument import Profiler

            _local.profiler = Profiler(interval=0.0005)
        _local.count = 0
    if mode == "cpu":
        _local.profiler.enable()
    else:
        _local.profiler.start()


def _profile_stop(kind: str) -> None:
    profiler = getattr(_local, "profiler", None)
    if profiler is None:
        return
    if isinstance(profiler, cProfile.Profile):
        profiler.disable()
    elif profiler.is_running:
        profiler.stop()
    else:
        return
    _local.count += 1
    if _local.count % PROFILE_EVERY == 0:
        name = f"profile-{kind}-{os.getpid()}-{threading.get_ident()}"
        directory = Path(os.environ["BENCH_PROBE_DIR"])
        if isinstance(profiler, cProfile.Profile):
            profiler.dump_stats(directory / f"{name}.prof")
        else:
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            (directory / f"{name}.txt").write_text(f"{_local.count} {kind}s\n{text}")


def _write(kind: str, name: str, cpu: float, wall: float) -> None:
    directory = os.environ.get("BENCH_PROBE_DIR")
    if directory:
        with open(Path(directory) / f"{os.getpid()}.tsv", "a") as out:
            out.write(f"{kind}\t{name}\t{cpu * 1000:.3f}\t{wall * 1000:.3f}\n")


def _before_task(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    _started.append((time.process_time(), time.perf_counter()))
    _profile_start()


def _after_task(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    _profile_stop("task")
    if _started:
        cpu, wall = _started.pop()
        name = str(task.get("func", "?")).rsplit(".", 1)[-1]
        _write("task", name, time.process_time() - cpu, time.perf_counter() - wall)


class ProbeConfig(AppConfig):
    name = "bench"
    label = "bench_probe"

    def ready(self) -> None:
        from django_q.signals import post_execute_in_worker, pre_execute

        pre_execute.connect(_before_task, dispatch_uid="bench-probe-before")
        post_execute_in_worker.connect(_after_task, dispatch_uid="bench-probe-after")


def request_kind(path: str) -> str:
    if path.startswith("/api/v1/jobs"):
        return "POST job"
    if path.startswith("/webhooks/"):
        return "webhook"
    if path.startswith("/media/") or "signed" in path or path.startswith("/files/"):
        return "photo link"
    return path


class RequestCpu:
    """Outermost middleware: the thread's CPU for the whole of Django's handling of one request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        _profile_start()
        cpu, wall = time.thread_time(), time.perf_counter()
        response = self.get_response(request)
        _profile_stop("web")
        _write("web", request_kind(request.path), time.thread_time() - cpu, time.perf_counter() - wall)
        return response


def read(directory: Path) -> dict[tuple[str, str], list[float]]:
    """(kind, name) -> [count, CPU ms, wall ms] summed over every process's file."""
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for path in directory.glob("[0-9]*.tsv"):
        for line in path.read_text().splitlines():
            kind, name, cpu, wall = line.split("\t")
            entry = totals[(kind, name)]
            entry[0] += 1
            entry[1] += float(cpu)
            entry[2] += float(wall)
    return dict(totals)
