"""The config read on every job's path: cached `get_active_config` against an uncached baseline.

Baseline: the same function with the cache window at 0 s, so every call goes to the database
(what the Go seed did per job). Prints calls per second of both, their ratio, and queries per call.
"""

from __future__ import annotations

import time

from django.db import connection, reset_queries
from django.test.utils import CaptureQueriesContext, override_settings

from models_config import selectors, services

SLUG = "flux-kontext-pro"
CALLS = 20_000
BASELINE_CALLS = 2_000


def _rate(calls: int) -> tuple[float, float]:
    selectors.invalidate()
    selectors.get_active_config(SLUG)  # warm
    reset_queries()
    with CaptureQueriesContext(connection) as captured:
        start = time.perf_counter()
        for _ in range(calls):
            selectors.get_active_config(SLUG)
        elapsed = time.perf_counter() - start
    return calls / elapsed, len(captured.captured_queries) / calls


def run() -> None:
    services.ensure_config_rows()
    with override_settings(MODELS_CONFIG_CACHE_SECONDS=0.0):
        base_rate, base_queries = _rate(BASELINE_CALLS)
    with override_settings(MODELS_CONFIG_CACHE_SECONDS=3600.0):
        cached_rate, cached_queries = _rate(CALLS)
    print("config_read: get_active_config on the job path")
    print(f"  re-check each read: {base_rate:12,.0f} reads/s  {base_queries:.2f} queries/read")
    print(f"  cached (steady)   : {cached_rate:12,.0f} reads/s  {cached_queries:.2f} queries/read")
    print(f"  speed-up ratio    : {cached_rate / base_rate:12,.1f}x")
