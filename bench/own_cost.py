"""The service's own cost: jobs/s end to end with Replicate taking no time, and CPU per job by process kind.

The stack of `bench/throughput.py` (`manage.py serve` = gunicorn + one `qcluster` with 2 workers, a
fresh PostgreSQL database, webhooks to gunicorn), but the emulator answers at once (latency 0), has no
create limit, and the service's pacer is off (`STAGING_CREATE_RATE=off`): what is left is our own work.
Each job's photo is 1024x683 of noise, so its output (flux-kontext-pro's default PNG) is about 2 MB,
which the collect downloads, decodes, thumbnails and stores.

Figures: N jobs (`BENCH_OWN_JOBS`, default 200; 40 with `BENCH_QUICK=1`) POSTed by `BENCH_CLIENTS`
threads; wall from the first POST to the last job succeeded; CPU seconds (user + system, from /proc)
of the service's processes over the run, divided by N: the web processes (the POST with its photo
check, the webhook, the signed photo link the emulator fetches) and the queue processes (submit and
collect). This process (client and emulator) shares the 2 cores and is not counted.

The stack runs with `bench.probe_settings`, so each task function and each Django request also
records its own CPU (`bench/probe.py`): the figures by step, and what the processes spent outside them
(django-q2's pusher polling the queue and monitor saving results, gunicorn's request parsing). With
`BENCH_PROBE_PROFILE=1` the stack's processes also keep pyinstrument profiles; their directory is printed.
"""

from __future__ import annotations

import io
import os
from typing import Any

from PIL import Image

from bench import stack, throughput
from models_config import services as config_services
from replicate_emulator import Emulator
from tests.fixtures.waiting import wait_until

QUICK = os.environ.get("BENCH_QUICK") == "1"
JOBS = int(os.environ.get("BENCH_OWN_JOBS", 40 if QUICK else 200))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 8))
JOBS_PER_S_TARGET = 30.0
CPU_MS_TARGET = 20.0


def noise_photo(size: tuple[int, int] = (1024, 683), seed: int = 8) -> bytes:
    """A photo that does not compress: the emulator's PNG output of it is about 2 MB."""
    raw = bytes((i * 2654435761 + seed) >> 13 & 0xFF for i in range(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, raw).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _cpu_by_kind(st: stack.Stack) -> dict[str, float]:
    totals = {"web": 0.0, "queue": 0.0, "other": 0.0}
    for cmdline, seconds in stack.process_cpu(st.process_tree()).values():
        kind = "web" if "gunicorn" in cmdline else "queue" if "qcluster" in cmdline else "other"
        totals[kind] += seconds
    return totals


def run() -> None:
    config_services.ensure_config_rows()
    photo = noise_photo()
    emu = Emulator(api_token="r8_bench_own_cost", latency=0.0, jitter=0.0, workers=32)
    emu.start()
    profile = os.environ.get("BENCH_PROBE_PROFILE", "")
    try:
        with stack.running_stack(emu, STAGING_CREATE_RATE="off", BENCH_PROBE_PROFILE=profile) as st:
            warm_id = throughput.warm_up(st, photo)
            st.reset_steps()
            result = _measure(st, emu, photo, warm_id)
            result["steps"] = st.steps()
            if profile in ("1", "cpu"):
                print(f"own_cost: pyinstrument profiles in {st.probe_dir}")
    except stack.StackUnavailable as exc:
        print(f"own_cost: skipped: {exc}")
        return
    finally:
        emu.stop()
    report(result, len(photo))


def _measure(st: stack.Stack, emu: Emulator, photo: bytes, after_job: int) -> dict[str, Any]:
    creates_before = emu.counters()["creates_total"]
    cpu_before = _cpu_by_kind(st)
    with st.db() as conn:
        posted = throughput.post_jobs(st, photo, JOBS, CLIENTS)
        expected = len(posted["ids"])
        finished = wait_until(lambda: stack.succeeded_since(conn, after_job)[0] >= expected, 300, step=0.25)
        succeeded, last_at = stack.succeeded_since(conn, after_job)
        output_bytes = conn.execute(
            "SELECT avg(size) FROM staging_stagedimage WHERE attempt_id IN "
            "(SELECT id FROM staging_attempt WHERE job_id > %s)",
            (after_job,),
        ).fetchone()
    emu.wait_for_webhooks(timeout=10)
    cpu_after = _cpu_by_kind(st)
    return {
        "ok": finished and expected == JOBS,
        "wall": (last_at - posted["began"]) if last_at is not None else float("nan"),
        "succeeded": succeeded,
        "errors": posted["errors"],
        "server_errors": st.server_errors(),
        "creates": emu.counters()["creates_total"] - creates_before,
        "cpu": {kind: cpu_after[kind] - cpu_before.get(kind, 0.0) for kind in cpu_after},
        "output_bytes": float(output_bytes[0]) if output_bytes and output_bytes[0] else 0.0,
    }


def report(result: dict[str, Any], photo_bytes: int) -> None:
    wall, cpu = result["wall"], result["cpu"]
    per_job = {kind: seconds / JOBS * 1000 for kind, seconds in cpu.items()}
    print(
        f"own_cost: {JOBS} jobs over HTTP, emulator latency 0 and no create limit, pacer off, PostgreSQL, "
        f"manage.py serve + qcluster (2 workers), webhooks; photo {photo_bytes / 1e6:.1f} MB, "
        f"output {result['output_bytes'] / 1e6:.1f} MB PNG"
    )
    print(
        f"  end to end: {wall:.1f} s, {JOBS / wall:.1f} jobs/s (target >= {JOBS_PER_S_TARGET:g}); succeeded "
        f"{result['succeeded']}/{JOBS}, creates {result['creates']}, refused posts {len(result['errors'])}, "
        f"5xx {result['server_errors']}" + ("" if result["ok"] else "  INCOMPLETE")
    )
    print(
        f"  CPU per job: web (POST + webhook + photo link) {per_job['web']:.1f} ms, queue (submit + collect) "
        f"{per_job['queue']:.1f} ms, serve itself {per_job['other']:.1f} ms; "
        f"webhook + submit + collect target <= {CPU_MS_TARGET:g} ms"
    )
    steps = result["steps"]
    print("  CPU by step (bench/probe.py: inside each task function and each Django request):")
    for (kind, name), (count, cpu_ms, wall_ms) in sorted(steps.items()):
        print(
            f"    {kind:5} {name:22} {int(count):5} x  {cpu_ms / max(count, 1):6.1f} ms CPU  "
            f"{wall_ms / max(count, 1):6.1f} ms wall  = {cpu_ms / JOBS:6.1f} ms per job"
        )
    for kind, label in (("task", "queue"), ("web", "web")):
        inside = sum(v[1] for (k, _), v in steps.items() if k == kind) / JOBS
        print(
            f"  {label}: {inside:.1f} ms per job inside {kind}s, {per_job[label] - inside:.1f} ms per job outside them "
            "(django-q2's pusher, monitor and polling; gunicorn's parsing and heartbeats)"
        )
    for error in result["errors"][:5]:
        print(f"    - {error}")
