"""The shared create pacer: slots `1 / STAGING_CREATE_RATE` apart for every worker together.

Time is passed in (`now=`) or moved by the test (`timezone.now`), never waited for; the pacer's own
sleep is replaced by one that moves the clock.
"""

from __future__ import annotations

import bisect
import os
import random
import subprocess
import sys
import threading
from collections import Counter
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
SIMULATED = pytest.mark.django_db  # thousands of pacer updates: inside one transaction, no commit each
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


@pytest.mark.parametrize("burst", ["lots", "0", "-5", "2.5"])
def test_a_malformed_burst_stops_the_start_with_one_clear_line(burst):
    env = {**os.environ, "STAGING_CREATE_BURST": burst}
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
        f"error: STAGING_CREATE_BURST: {burst!r} is not a count of creates; write 1 or more."
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
    settings.STAGING_CREATE_BURST = 10
    interval = pacer.create_pace().interval
    t0 = timezone.now()
    slots = [pacer.take_create_slot(now=t0, max_sleep=0.25) for _ in range(13)]
    assert all(slot.granted and slot.wait < 0.001 for slot in slots[:10])  # at rest: the burst is free
    assert [slot.granted for slot in slots[10:12]] == [True, True]
    assert [slot.wait for slot in slots[10:12]] == pytest.approx([interval, 2 * interval], abs=1e-5)
    assert not slots[12].granted and abs((slots[12].retry_at - t0).total_seconds() - 3 * interval) < 0.001
    assert not pacer.take_create_slot(now=t0).granted  # by default a worker sleeps MAX_SLEEP_SECONDS at most


@SIMULATED
def test_after_an_idle_spell_a_burst_goes_at_once_then_the_full_rate(settings):
    settings.STAGING_CREATE_RATE = "600/m"
    settings.STAGING_CREATE_BURST = 50
    pace = pacer.create_pace()
    assert pace == pacer.Pace(interval=pytest.approx(0.1), tolerance=pytest.approx(4.9), window_limit=600)
    t0 = timezone.now()
    burst = [pacer.take_create_slot(now=t0) for _ in range(51)]
    assert all(slot.granted and slot.wait == 0 for slot in burst[:50]) and not burst[50].granted
    # Then one every 0.1 s, not 60/590 s: 500 creates asked for at once are all sent within 45 s.
    created = _flood(t0 + timedelta(seconds=0.001), seconds=50, every=0.01, stop_after=450)
    assert len(created) == 450 and (created[-1] - t0).total_seconds() <= 45.01
    # An idle spell gives the burst back, once the last minute has room for it.
    later = t0 + timedelta(seconds=120)
    assert all(pacer.take_create_slot(now=later).granted for _ in range(50))
    assert not pacer.take_create_slot(now=later).granted


def _flood(start, *, seconds: float, every: float, per_step: int = 1, stop_after: int | None = None) -> list:
    """Ask for `per_step` slots every `every` seconds for `seconds`; the moments the granted creates go."""
    created, now, end = [], start, start + timedelta(seconds=seconds)
    while now < end and (stop_after is None or len(created) < stop_after):
        for _ in range(per_step):
            slot = pacer.take_create_slot(now=now)
            if slot.granted:
                created.append(now + timedelta(seconds=slot.wait))
        now += timedelta(seconds=every)
    return created


def _most_within(created: list, window: timedelta) -> int:
    created = sorted(created)
    return max(bisect.bisect_left(created, start + window) - i for i, start in enumerate(created))


def _most_in_a_minute(created: list) -> int:
    return _most_within(created, timedelta(seconds=60))


@SIMULATED
@pytest.mark.parametrize("burst", [1, 10, 50])
def test_no_minute_ever_holds_more_than_the_rate_whatever_the_bursts(settings, burst):
    """Seeded arrivals for 2.5 simulated minutes: floods, idle spells, bursts after them; count every window."""
    settings.STAGING_CREATE_RATE = "600/m"
    settings.STAGING_CREATE_BURST = burst
    rng = random.Random(20261125 + burst)
    t0 = timezone.now()
    created, now = [], t0
    while now < t0 + timedelta(seconds=150):
        if rng.random() < 0.002:  # an idle spell of up to 20 s gives the burst back
            now += timedelta(seconds=rng.uniform(1, 20))
        for _ in range(rng.choice([0, 1, 1, 2, 12])):  # nobody, a worker, a few, a flood of first tries
            slot = pacer.take_create_slot(now=now, max_sleep=rng.choice([0.05, 0.25]))
            if slot.granted:
                created.append(now + timedelta(seconds=slot.wait))
        now += timedelta(seconds=rng.uniform(0.005, 0.1))
    assert len(created) > 600  # the pacer let creates through at the rate, not a trickle
    assert _most_in_a_minute(created) <= 600
    # At most the burst at once, and at most the burst plus the rate's 10 in any second.
    assert max(Counter(created).values()) <= burst
    assert _most_within(created, timedelta(seconds=1)) <= burst + 10


@SIMULATED
def test_a_minute_full_of_creates_holds_the_next_burst_back(settings):
    """The worst case for a window: the burst, the full rate for a minute, a burst again: held to the rate."""
    settings.STAGING_CREATE_RATE = "600/m"
    settings.STAGING_CREATE_BURST = 50
    t0 = timezone.now()
    created = _flood(t0, seconds=130, every=0.05, per_step=2)
    first_minute = [t for t in created if t < t0 + timedelta(seconds=60)]
    assert len(first_minute) == 600  # the burst made the minute's slots come earlier, not more of them
    assert _most_in_a_minute(created) <= 600
    # Sustained, a minute (and the second's margin for a create's trip) holds the rate.
    assert 590 <= sum(1 for t in created if t0 + timedelta(seconds=61) <= t < t0 + timedelta(seconds=122)) <= 600


def test_unpaced_and_slow_rates_keep_their_plain_spacing(settings):
    settings.STAGING_CREATE_RATE = "3/m"
    assert pacer.create_pace() == pacer.Pace(interval=20.0, tolerance=0.0)
    settings.STAGING_CREATE_BURST = 1
    settings.STAGING_CREATE_RATE = "600/m"
    assert pacer.create_pace() == pacer.Pace(interval=pytest.approx(0.1), tolerance=0.0)
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
