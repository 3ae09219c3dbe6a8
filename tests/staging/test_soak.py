"""A soak under faults: jobs over every model through production's shape, with a host lost mid-run.

The app server (gunicorn) is `STAGING_PUBLIC_URL`: webhooks and photo links go through it. Two
`qcluster` processes share the PostgreSQL queue as two hosts; one is SIGKILLed while attempts are in
flight and started again. The emulator injects the fault mix by probability with a fixed seed, plus
one of each up front (`bench.scenarios.soak.FAULTS`): create 500 and 429, transient failures (E6716),
moderation (E005), lost and duplicated webhooks, creates whose answer is dropped, jittered latency.
The promises of docs/architecture.md#never-pay-twice must hold: every job ends terminal, every
prediction Replicate reports succeeded has its outputs stored byte for byte and decodable, every
attempt created its prediction exactly once, no job failed for refused creates alone
(docs/architecture.md#refused-creates), and the counts add up: every failed job was moderated or
gave up after its transient failures. `pytest -s` prints the summary.

PostgreSQL only: two clusters as two hosts is what the ORM broker on PostgreSQL is for; SQLite's one
writer at a time is no such deployment. Sizes: SOAK_TEST_JOBS (default 20), SOAK_TICK_SECONDS
(default 2; 0 relies on django-q's own 30 s scheduler loop alone, then allow the 150 s bound), SOAK_SEED.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connection
from django.utils import timezone

from bench.scenarios import soak
from replicate_emulator import Emulator
from staging import schedules
from tests.fixtures.emulator import EMULATOR_TOKEN
from tests.fixtures.photos import image_bytes

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

JOBS = int(os.environ.get("SOAK_TEST_JOBS", "20"))
TICK_SECONDS = float(os.environ.get("SOAK_TICK_SECONDS", "2"))
TIMEOUT = 150.0


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """Overrides the shared `emulator`: seeded and jittered, for the soak."""
    with soak.make_emulator(EMULATOR_TOKEN) as emu:
        yield emu


def test_soak_under_faults_with_two_clusters_and_a_crash(emulator: Emulator, subprocess_env, tmp_path) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the soak runs two qclusters as two hosts on one PostgreSQL; set DATABASE_URL=postgres://…")
    schedules.ensure_schedules()
    emulator.set_faults(**soak.FAULTS)
    since = timezone.now()
    with soak.deployment(emulator, subprocess_env, tmp_path) as service:
        service.warm_up()
        job_ids = soak.create_jobs(JOBS, image_bytes())
        elapsed, crash = soak.drive(job_ids, TIMEOUT, TICK_SECONDS, victim=service.clusters[1])
        emulator.wait_for_webhooks(timeout=5)  # let late duplicates land: they must change nothing
        found = soak.check(emulator, job_ids, since, crash)
        tasks_run = service.tasks_run()
        logs = service.logs()
    ticks = f"tick every {TICK_SECONDS:g} s" if TICK_SECONDS > 0 else "django-q schedules only"
    header = f"soak: {JOBS} jobs, seed {soak.SEED}, gunicorn + 2 qclusters x 2 workers, {ticks}"
    print("\n" + "\n".join(soak.summary(found, elapsed=elapsed, header=header)) + f"\n  tasks run : {tasks_run}")

    assert elapsed is not None, f"{soak.open_jobs(job_ids)} attempts still open\n{logs}"
    assert not found.violations, "\n".join(found.violations)
    # The run really exercised what it claims to prove.
    assert crash.killed_after is not None and crash.in_flight >= soak.kill_threshold(JOBS), crash.describe()
    assert crash.restarted_after is not None, crash.describe()
    assert all(tasks_run.values()), f"a cluster ran no task: {tasks_run}"
    missing = sorted(kind for kind in soak.FAULT_FLOOR if not found.faults.get(kind))
    assert not missing, f"faults never injected: {missing}"
    assert found.moderated >= 1 and found.failed_moderated >= 1, "no job was failed by moderation"
    # A transient failure started a new paid attempt. Whether that retry then succeeds depends on which
    # later prediction the random moderation hits; every failed job's cause is checked in `violations`.
    assert found.retried_jobs >= 1, "no job got a second attempt after a transient failure"
    assert found.outputs_checked >= JOBS // 2, f"only {found.outputs_checked} outputs stored"
    assert found.max_creates_per_token == 1
