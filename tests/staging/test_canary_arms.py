"""Each attempt records the canary arm of its job, through the real pipeline and the emulator.

A job's arm comes from its uid alone (`models_config.selectors.arm_for`), so a retry or reprocess of the job
lands on the same arm while the canary runs; the last test changes the canary during a burst on a real
qcluster and checks every attempt against the pointer it could have read.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError
from django.utils import timezone

from models_config import canary
from models_config import services as config_services
from models_config.selectors import arm_for
from staging import reprocessing, services
from staging.models import Attempt, StagingJob
from tests.fixtures.config_rows import changed_config
from tests.fixtures.photos import upload
from tests.fixtures.pipeline import attempts, drive
from tests.fixtures.waiting import wait_until

SLUG = "flux-kontext-pro"
HALF = Decimal("0.5")


def arrange_canary(share: str = "0.5") -> None:
    """v1 = code defaults (the candidate), v2 = a prompt marked "(v2)" (active)."""
    config_services.ensure_config_rows()
    config_services.save_version(SLUG, changed_config(SLUG, "v2"), author=None, comment="v2")
    canary.start_canary(SLUG, 1, share, actor=None, comment="try v1 again")


def expected(job: StagingJob, share: Decimal = HALF) -> tuple[str, int]:
    arm = arm_for(job.uid, share)
    return arm, 1 if arm == "candidate" else 2


@pytest.fixture
def canary_jobs(make_job) -> list[StagingJob]:
    """Jobs run to the end with a canary at 0.5, until both arms have some (the uids are random)."""
    arrange_canary()
    jobs: list[StagingJob] = []
    while len(jobs) < 6 or len({arm_for(job.uid, HALF) for job in jobs}) < 2:
        assert len(jobs) < 60, "60 random uids all on one arm: the uid rule is broken"
        job = make_job(SLUG)
        assert drive(job) == "succeeded"
        jobs.append(job)
    return jobs


@pytest.mark.django_db(transaction=True)
def test_each_attempt_records_its_jobs_arm_and_that_arms_version(
    canary_jobs: list[StagingJob], operator_client
) -> None:
    for job in canary_jobs:
        [attempt] = attempts(job)
        assert (attempt.arm, attempt.config_version.number) == expected(job), job.uid
        assert attempt.input["prompt"].endswith("(v2)") == (attempt.arm == "active")  # the input it really sent
        [shown] = operator_client.get(f"/api/v1/jobs/{job.pk}").json()["attempts"]
        assert (shown["arm"], shown["config_version"]) == expected(job)


@pytest.mark.django_db(transaction=True)
def test_a_reprocess_keeps_the_jobs_arm_while_the_canary_runs(canary_jobs: list[StagingJob]) -> None:
    for job in canary_jobs[:4]:
        assert reprocessing.plan_for(job).config_version == expected(job)[1]  # the dry run shows the same
        services.retry_job(job.pk)
        assert drive(job) == "succeeded"
        first, second = attempts(job)
        assert (second.arm, second.config_version_id) == (first.arm, first.config_version_id)

    canary.stop_canary(SLUG, actor=None, comment="over")
    job = next(job for job in canary_jobs if arm_for(job.uid, HALF) == "candidate")
    services.retry_job(job.pk)
    assert drive(job) == "succeeded"
    assert (attempts(job)[-1].arm, attempts(job)[-1].config_version.number) == ("active", 2)


def start_mid_burst() -> bool:
    """Start the canary; False when SQLite refused the write because a worker held its one write lock (a
    deferred transaction that must upgrade to writing gets SQLITE_BUSY at once, whatever the timeout)."""
    try:
        canary.start_canary(SLUG, 1, "0.5", actor=None, comment="mid-burst")
    except OperationalError:
        return False
    return True


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_a_canary_started_during_a_burst_on_a_real_cluster(emulator, qcluster, settings) -> None:
    """Jobs are submitted by two workers while the canary starts. Each attempt is on the arm its uid gives
    under the pointers its worker read: an attempt on the active arm whose uid belongs to the candidate
    must have been claimed before the workers could have seen the canary (the cache's recheck interval)."""
    config_services.ensure_config_rows()
    config_services.save_version(SLUG, changed_config(SLUG, "v2"), author=None, comment="v2")
    # A burst of creates that lasts a few seconds: evenly paced, not let go at once (STAGING_CREATE_BURST).
    qcluster.env.update(STAGING_CREATE_RATE="8/s", STAGING_CREATE_BURST="1")
    jobs = [services.create_job(upload(), SLUG) for _ in range(24)]
    qcluster.start()
    # The burst has begun: a few attempts claimed (some may have finished already), most still waiting.
    assert wait_until(lambda: Attempt.objects.exclude(state=Attempt.State.QUEUED).count() >= 4, 60, 0.02)
    assert wait_until(start_mid_burst, 30, 0.02)
    started_at = timezone.now()
    assert wait_until(
        lambda: all(StagingJob.objects.get(pk=job.pk).status == "succeeded" for job in jobs), 120, 0.25
    ), qcluster.logs()

    seen_by_all = started_at + timedelta(seconds=settings.MODELS_CONFIG_CACHE_SECONDS + 0.5)
    on_candidate = 0
    for job in jobs:
        [attempt] = Attempt.objects.filter(job=job).select_related("config_version")
        assert emulator.creates_for_token(attempt.token) == 1
        rule_arm = arm_for(job.uid, HALF)
        assert (attempt.arm, attempt.config_version.number) in {("active", 2), ("candidate", 1)}
        if attempt.arm == "candidate":
            assert rule_arm == "candidate", job.uid  # the candidate never takes a job the rule keeps on active
            on_candidate += 1
        elif rule_arm == "candidate":
            assert attempt.submitting_at <= seen_by_all, (job.uid, attempt.submitting_at, started_at)
    late = [job for job in jobs if Attempt.objects.get(job=job).submitting_at > seen_by_all]
    assert late, "the canary started after the burst: the test proved nothing"
    assert all(Attempt.objects.get(job=job).arm == arm_for(job.uid, HALF) for job in late)
    print(f"{on_candidate} of {len(jobs)} on the candidate; {len(late)} submitted after every worker saw it")
