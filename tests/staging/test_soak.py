"""A soak under faults: jobs over every model through a REAL qcluster, webhooks to the live server.

Every fault the emulator knows is on at once, by probability with a fixed seed plus one of each up
front (`bench.scenarios.soak.FAULTS`): failed predictions (E6716, transient), moderation (E005, permanent),
create 503 and 429, creates whose answer is lost, lost and duplicated webhooks, jittered latency.
The promises of docs/architecture.md#never-pay-twice must hold: every job ends terminal, every
prediction Replicate reports succeeded has its outputs stored byte for byte, no attempt token creates
twice and every create is known to an attempt, moderation fails the job with a clear reason and no
retry, transient failures retry (a 429 after its named wait). `pytest -s` prints the summary.

Sizes: SOAK_TEST_JOBS (default 24), SOAK_TICK_SECONDS (default 3; 0 relies on django-q's own
30 s scheduler loop alone, then allow the 150 s bound), SOAK_SEED.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.utils import timezone

from bench.scenarios import soak
from replicate_emulator import Emulator
from staging import schedules
from tests.fixtures.emulator import EMULATOR_TOKEN
from tests.fixtures.photos import image_bytes

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

JOBS = int(os.environ.get("SOAK_TEST_JOBS", "24"))
TICK_SECONDS = float(os.environ.get("SOAK_TICK_SECONDS", "3"))
TIMEOUT = 150.0


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """Overrides the shared `emulator` (which `qcluster` builds on): seeded and jittered, for the soak."""
    with soak.make_emulator(EMULATOR_TOKEN) as emu:
        yield emu


def test_soak_under_faults(settings, emulator: Emulator, qcluster) -> None:
    # This process serves the webhooks, so it fails attempts and schedules retries too: same settings.
    for name, value in soak.PIPELINE_SETTINGS.items():
        setattr(settings, name, value)
    qcluster.env.update(soak.pipeline_env())
    schedules.ensure_schedules()
    emulator.set_faults(**soak.FAULTS)
    since = timezone.now()
    job_ids = soak.create_jobs(JOBS, image_bytes())

    qcluster.start()
    elapsed = soak.wait_terminal(job_ids, TIMEOUT, TICK_SECONDS)
    emulator.wait_for_webhooks(timeout=5)  # let late duplicates land: they must change nothing
    found = soak.check(emulator, job_ids, since)
    ticks = f"tick every {TICK_SECONDS:g} s" if TICK_SECONDS > 0 else "django-q schedules only"
    header = f"soak: {JOBS} jobs, seed {soak.SEED}, 2 workers, {ticks}"
    print("\n" + "\n".join(soak.summary(found, elapsed=elapsed, header=header)))

    assert elapsed is not None, f"{soak.open_jobs(job_ids)} attempts still open\n{qcluster.logs()}"
    assert not found.violations, "\n".join(found.violations)
    # The run really exercised what it claims to prove.
    missing = sorted(kind for kind in soak.FAULT_FLOOR if not found.faults.get(kind))
    assert not missing, f"faults never injected: {missing}"
    assert found.moderated >= 1, "no prediction was moderated"
    assert found.retried_and_succeeded >= 1, "no job succeeded after a retry"
    assert found.outputs_checked >= JOBS // 2, f"only {found.outputs_checked} outputs stored"
    assert found.max_creates_per_token == 1
