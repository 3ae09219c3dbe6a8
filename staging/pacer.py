"""Keeping creates under the account's limit (`STAGING_CREATE_RATE`) for all workers together.

Replicate allows an account a number of creates per minute (600; far fewer for an account low on
credit) and answers 429 above it. Instead of learning the limit from refusals, every worker asks here
for a slot before it creates: a token bucket (GCRA form: slots `1 / rate` apart, up to
`STAGING_CREATE_BURST` of them at once after an idle spell) plus a sliding-window count of the creates
of the last minute, so that no 60-second window ever holds more creates than the rate allows, bursts
included (docs/architecture.md#pacing-creates).

The state is one `CreatePacer` row in the database, because every worker on every host must share it
and the default cache is per process. It moves by compare-and-set (`UPDATE … WHERE version = v`),
like the attempt transitions: no lock is held while Python runs, and it works the same on SQLite and
PostgreSQL. At 10 creates a second that is 10 small updates a second.

A worker whose slot is at most `MAX_SLEEP_SECONDS` away sleeps until it; one that would wait longer
puts the attempt back in the queue for later (`transitions.refused`) instead of holding a worker.
Those put off join a line (`line_ends_at`) one slot apart, so they come back one at a time rather
than all at once, each finding a slot free; an attempt trying for the first time while
others wait in the line joins its end instead of taking the slot the next of them comes back for
(`behind_line`). A backlog thus waits as delayed tasks that no worker holds, and the queue in front of
the workers holds only work they can do now, such as collecting finished predictions
(docs/architecture.md#pacing-creates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import sleep

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .errors import clamp_wait
from .models import CreatePacer
from .rates import parse_rate

NAME = "replicate-create"
MAX_SLEEP_SECONDS = 0.05  # a worker sleeps this long at most for its slot; longer waits go back to the queue
WINDOW_SECONDS = 60.0  # Replicate counts creates per minute
# A create may reach Replicate up to this long after its slot and still count in the window it was paced
# for (docs/architecture.md#pacing-creates): the window the pacer checks is this much longer.
DELIVERY_MARGIN_SECONDS = 1.0
_KEPT_SECONDS = 5  # per-second counts are kept this much past the window, for a worker with a stale `now`
_CAS_TRIES = 50
_LONGEST_INTERVAL = 86400.0  # a rate below one a day is treated as one a day (no overflowing timedelta)


@dataclass(frozen=True)
class Slot:
    """The answer of `take_create_slot`: create after `wait` seconds, or, with `retry_at`, not now."""

    wait: float = 0.0
    retry_at: datetime | None = None

    @property
    def granted(self) -> bool:
        return self.retry_at is None


@dataclass(frozen=True)
class Pace:
    interval: float  # seconds between two slots
    tolerance: float  # how far in the past a slot nobody took may still be taken: (burst - 1) slots
    window_limit: int = 0  # creates allowed in any window of `window` seconds; 0: the spacing alone keeps it

    @property
    def window(self) -> float:
        return WINDOW_SECONDS + DELIVERY_MARGIN_SECONDS


def create_pace() -> Pace | None:
    """The slots of STAGING_CREATE_RATE and STAGING_CREATE_BURST; None when creates are not paced.

    Up to `burst` slots nobody took (at most a tenth of a minute's) may be taken at once, so that a
    queue filling after an idle spell, or a moment when every worker was busy collecting, costs no
    creates. A bucket refilling at the full rate would then let a minute hold the rate plus the burst;
    the sliding-window count (`window_limit`) holds creates back instead when the last minute is full
    (docs/architecture.md#pacing-creates). With a burst of 1 the spacing alone keeps every minute within
    the rate, and no count is kept.
    """
    rate = parse_rate(settings.STAGING_CREATE_RATE)
    if rate is None:
        return None
    per_minute = rate * WINDOW_SECONDS
    burst = max(1, min(int(settings.STAGING_CREATE_BURST), int(per_minute // 10)))
    interval = min(1.0 / rate, _LONGEST_INTERVAL)
    if burst == 1:
        return Pace(interval=interval, tolerance=0.0)
    return Pace(interval=interval, tolerance=(burst - 1) * interval, window_limit=int(per_minute))


def _epoch_second(moment: datetime) -> int:
    return math.floor(moment.timestamp())


def window_frees_at(recent: list[list[int]], at: datetime, pace: Pace) -> datetime:
    """The first moment from `at` on when a create keeps the last window within `pace.window_limit`.

    `recent` holds `[epoch second, creates]` pairs. A create at t counts every second that overlaps
    (t - window, t]: counting whole seconds can only count more, never fewer, than the window holds.
    """
    horizon = at.timestamp() - pace.window
    counts = sorted((second, count) for second, count in recent if second + 1 > horizon)
    excess = sum(count for _, count in counts) - (pace.window_limit - 1)
    if excess <= 0:
        return at
    for second, count in counts:  # the oldest second leaves the window first
        excess -= count
        if excess <= 0:
            return datetime.fromtimestamp(second + 1 + pace.window, tz=UTC)
    return at  # not reached: the newest second leaves too


def counted(recent: list[list[int]], at: datetime, now: datetime, pace: Pace) -> list[list[int]]:
    """`recent` with one more create in the second of `at`, and seconds no window can reach dropped."""
    keep_after = now.timestamp() - pace.window - _KEPT_SECONDS
    second = _epoch_second(at)
    counts = {s: c for s, c in recent if s + 1 > keep_after}
    counts[second] = counts.get(second, 0) + 1
    return [[s, counts[s]] for s in sorted(counts)]


def _row(now: datetime) -> CreatePacer:
    row = CreatePacer.objects.filter(name=NAME).first()
    if row is not None:
        return row
    try:
        with transaction.atomic():  # a savepoint: losing the race to create it must not break the caller
            # At rest: the late slots of `create_pace` are free (its tolerance bounds how many).
            return CreatePacer.objects.create(
                name=NAME, next_slot_at=now - timedelta(days=1), line_ends_at=now, recent=[]
            )
    except IntegrityError:
        return CreatePacer.objects.get(name=NAME)


def take_create_slot(*, now: datetime | None = None, max_sleep: float | None = None, behind_line: bool = False) -> Slot:
    """Reserve the next create slot if it is at most `max_sleep` seconds away, else say when to come back.

    A granted slot is the caller's: it must create after `wait` seconds (`wait_for`) or let the slot go
    unused; it never gives two callers the same slot. `behind_line`: the caller tries for the first time,
    so while attempts put off earlier wait in the line it joins the line's end rather than pass them.
    """
    pace = create_pace()
    if pace is None:
        return Slot()
    interval = pace.interval
    now = now or timezone.now()
    max_sleep = MAX_SLEEP_SECONDS if max_sleep is None else max_sleep
    step = timedelta(seconds=interval)
    for _ in range(_CAS_TRIES):
        row = _row(now)
        slot = max(row.next_slot_at, now - timedelta(seconds=pace.tolerance))
        if pace.window_limit and (frees := window_frees_at(row.recent, max(slot, now), pace)) > max(slot, now):
            slot = frees  # the last minute is full: wait for its oldest creates to leave it
        wait = max(0.0, (slot - now).total_seconds())
        if wait <= max_sleep and not (behind_line and row.line_ends_at > now):
            changes = {"next_slot_at": slot + step}
            if pace.window_limit:  # counted when it will be sent (a late slot is sent now, not in the past)
                changes["recent"] = counted(row.recent, max(slot, now), now, pace)
            answer = Slot(wait=wait)
        else:
            back_at = max(row.line_ends_at, slot)
            changes = {"line_ends_at": back_at + step}
            # Not clamped: a place in the line is a real wait, bounded by the attempt's deadline (`refused`).
            answer = Slot(wait=(back_at - now).total_seconds(), retry_at=back_at)
        if CreatePacer.objects.filter(pk=row.pk, version=row.version).update(version=row.version + 1, **changes):
            return answer
    # Every try lost a race: that many workers at once means the slots are taken; come back a slot later.
    return Slot(wait=interval, retry_at=now + timedelta(seconds=clamp_wait(interval)))


def wait_for(slot: Slot) -> None:
    """Sleep until a granted slot (at most MAX_SLEEP_SECONDS-ish: `take_create_slot` grants no longer)."""
    if slot.granted and slot.wait > 0:
        sleep(clamp_wait(slot.wait))
