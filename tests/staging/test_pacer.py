"""The shared create pacer: slots `1 / STAGING_CREATE_RATE` apart for every worker together.

Time is passed in (`now=`) or moved by the test (`timezone.now`), never waited for; the pacer's own
sleep is replaced by one that moves the clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from itertools import pairwise

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf

from staging import pacer, services, sweeps
from staging.models import Attempt, CreatePacer, StagingJob
from staging.rates import parse_rate
from tests.fixtures.photos import upload
from tests.fixtures.pipeline import attempts, job_status
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
S = Attempt.State


@pytest.mark.parametrize(
    "text, per_second",
    [("600/m", 10.0), ("10/s", 10.0), ("36000/h", 10.0), ("6", 0.1), (" 3 / m ", 0.05), ("0", None), ("off", None)],
)
def test_rates_are_read_as_people_write_them(text, per_second):
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["fast", "10/d", "-3/m", "1e3/m", "600 per minute"])
def test_a_malformed_rate_says_what_is_expected(text):
    with pytest.raises(ValueError, match="write it like 600/m"):
        parse_rate(text)


def test_a_malformed_create_rate_stops_the_start_with_one_clear_line():
    env = {**os.environ, "STAGING_CREATE_RATE": "lots"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: STAGING_CREATE_RATE: 'lots' is not a rate; write it like 600/m, 10/s or 36000/h (0 or off: no limit)."
    ]


def test_slots_are_spaced_by_the_rate_and_long_waits_join_a_line(settings):
    settings.STAGING_CREATE_RATE = "3/m"  # a slot every 20 s
    t0 = timezone.now()
    assert pacer.take_create_slot(now=t0) == pacer.Slot(wait=0.0)
    put_off = [pacer.take_create_slot(now=t0) for _ in range(3)]
    assert [slot.granted for slot in put_off] == [False, False, False]
    # One behind the other, a slot apart: they come back one at a time, not all at once.
    assert [slot.retry_at for slot in put_off] == [t0 + timedelta(seconds=s) for s in (20, 40, 60)]
    assert pacer.take_create_slot(now=t0 + timedelta(seconds=20)) == pacer.Slot(wait=0.0)
    assert not pacer.take_create_slot(now=t0 + timedelta(seconds=30)).granted  # the next is at 40 s
    assert pacer.take_create_slot(now=t0 + timedelta(seconds=40)).granted


def test_a_short_wait_is_slept_and_a_long_one_is_not(settings):
    settings.STAGING_CREATE_RATE = "600/m"
    interval = pacer.create_pace().interval
    t0 = timezone.now()
    slots = [pacer.take_create_slot(now=t0, max_sleep=0.25) for _ in range(14)]
    assert all(slot.granted and slot.wait < 0.001 for slot in slots[:11])  # at rest: the late slots are free
    assert [slot.granted for slot in slots[11:13]] == [True, True]
    assert [slot.wait for slot in slots[11:13]] == pytest.approx([interval, 2 * interval], abs=1e-5)
    assert not slots[13].granted and abs((slots[13].retry_at - t0).total_seconds() - 3 * interval) < 0.001
    assert not pacer.take_create_slot(now=t0).granted  # by default a worker sleeps MAX_SLEEP_SECONDS at most


def test_slots_nobody_took_in_the_last_second_may_be_taken_late_within_the_rate(settings):
    """At 600/m: 10 late slots, spaced 60/590 s, so a minute never holds more than 600 whatever the arrivals."""
    settings.STAGING_CREATE_RATE = "600/m"
    pace = pacer.create_pace()
    assert pace.interval == pytest.approx(60 / 590) and pace.tolerance == pytest.approx(10 * 60 / 590)
    t0 = timezone.now()
    assert pacer.take_create_slot(now=t0).granted
    # Every worker was busy for 3 s: a second's worth of slots can still be used at once, not three seconds'.
    later = t0 + timedelta(seconds=3)
    burst = [pacer.take_create_slot(now=later) for _ in range(12)]
    assert all(slot.granted and slot.wait < 0.001 for slot in burst[:11]) and not burst[11].granted
    # The worst case for a minute: the late slots used at once, then a create asked for every 20 ms for 70 s.
    created, now = [t0, *[later] * 11], later
    for _ in range(3500):
        now += timedelta(seconds=0.02)
        slot = pacer.take_create_slot(now=now)
        if slot.granted:
            created.append(now + timedelta(seconds=slot.wait))
    window = timedelta(seconds=60)
    most = max(sum(1 for t in created[i:] if t < start + window) for i, start in enumerate(created))
    assert 580 < most <= 600


def test_unpaced_and_slow_rates_keep_their_plain_spacing(settings):
    settings.STAGING_CREATE_RATE = "3/m"
    assert pacer.create_pace() == pacer.Pace(interval=20.0, tolerance=0.0)
    settings.STAGING_CREATE_RATE = "off"
    assert pacer.create_pace() is None


def test_a_first_try_joins_the_line_instead_of_passing_those_put_off(settings):
    settings.STAGING_CREATE_RATE = "3/m"  # a slot every 20 s
    t0 = timezone.now()
    assert pacer.take_create_slot(now=t0, behind_line=True).granted  # nobody waits: the slot is free
    put_off = pacer.take_create_slot(now=t0)
    assert put_off.retry_at == t0 + timedelta(seconds=20)
    # At 20 s a new attempt arrives just before the one put off comes back for that slot: it lines up.
    first_try = pacer.take_create_slot(now=t0 + timedelta(seconds=20), behind_line=True)
    assert not first_try.granted and first_try.retry_at == t0 + timedelta(seconds=40)
    assert pacer.take_create_slot(now=t0 + timedelta(seconds=20)) == pacer.Slot(wait=0.0)
    # Once the line has come back, a first try takes a free slot again.
    assert pacer.take_create_slot(now=t0 + timedelta(seconds=40)).granted
    assert pacer.take_create_slot(now=t0 + timedelta(seconds=70), behind_line=True) == pacer.Slot(wait=0.0)


def test_an_unpaced_service_touches_no_row(settings):
    settings.STAGING_CREATE_RATE = "0"
    assert all(pacer.take_create_slot().wait == 0 for _ in range(5))
    assert not CreatePacer.objects.exists()


@pytest.fixture
def moved_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """`timezone.now` runs `offset[0]` seconds ahead; the pacer's sleep moves it instead of sleeping."""
    offset = [0.0]
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=offset[0]))

    def sleep(seconds: float) -> None:
        offset[0] += seconds

    monkeypatch.setattr(pacer, "sleep", sleep)
    return offset


def _queued_jobs(count: int, monkeypatch: pytest.MonkeyPatch) -> list[StagingJob]:
    monkeypatch.setattr(Conf, "SYNC", False)  # their submit tasks stay in the queue
    jobs = [services.create_job(upload(), "flux-kontext-pro") for _ in range(count)]
    monkeypatch.setattr(Conf, "SYNC", True)
    return jobs


def _created_at(jobs: list[StagingJob]) -> list:
    return sorted(
        Attempt.objects.filter(job__in=jobs, submitted_at__isnull=False).values_list("submitted_at", flat=True)
    )


def test_concurrent_submits_create_no_more_than_the_rate_allows(pipeline, settings, moved_clock, monkeypatch):
    settings.STAGING_CREATE_RATE = "3/m"
    jobs = _queued_jobs(6, monkeypatch)
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def submit(attempt_id: int) -> None:
        try:
            barrier.wait()
            services.submit_attempt(attempt_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(attempts(job)[0].pk,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert pipeline.counters()["creates_total"] == 1  # six at once: one slot now, the rest queued for later
    waiting = Attempt.objects.filter(job__in=jobs, state=S.QUEUED).order_by("next_retry_at")
    assert waiting.count() == 5 and all("STAGING_CREATE_RATE=3/m" in a.error for a in waiting)

    def all_created() -> bool:
        moved_clock[0] += 5
        sweeps.retry_due()
        return pipeline.counters()["creates_total"] == len(jobs)

    assert wait_until(all_created, timeout=30, step=0.01)
    created = _created_at(jobs)
    assert len(created) == 6 == pipeline.counters()["creates_total"]
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(created)]
    assert min(gaps) >= 20 - 0.5, gaps  # never more than 3 in any minute
    assert Attempt.objects.filter(job__in=jobs).count() == 6  # waiting for a slot took no paid attempt

    def all_succeeded() -> bool:
        sweeps.poll_in_flight()
        return all(job_status(job) == "succeeded" for job in jobs)

    assert wait_until(all_succeeded, 15)


def test_a_worker_sleeps_for_a_near_slot_then_creates(pipeline, settings, moved_clock, monkeypatch):
    settings.STAGING_CREATE_RATE = "6000/m"  # slots ~10 ms apart: within a worker's short sleep
    interval = pacer.create_pace().interval
    jobs = _queued_jobs(3, monkeypatch)
    frozen = timezone.now()  # only the pacer's sleep moves the clock: a submit takes real time, near 0.1 s
    monkeypatch.setattr(timezone, "now", lambda: frozen + timedelta(seconds=moved_clock[0]))
    CreatePacer.objects.create(name=pacer.NAME, next_slot_at=frozen, line_ends_at=frozen)  # no late slots left
    start = moved_clock[0]
    for job in jobs:
        services.submit_attempt(attempts(job)[0].pk)
    assert pipeline.counters()["creates_total"] == 3
    assert Attempt.objects.filter(job__in=jobs, state=S.QUEUED).count() == 0  # nobody was put off
    # Slept (the clock moved) for the second and third slots.
    assert moved_clock[0] - start == pytest.approx(2 * interval, abs=1e-5)
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(_created_at(jobs))]
    assert min(gaps) >= interval * 0.9, gaps
