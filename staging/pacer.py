"""Keeping creates under the account's limit (`STAGING_CREATE_RATE`) for all workers together.

Replicate allows an account a number of creates per minute (600; far fewer for an account low on
credit) and answers 429 above it. Instead of learning the limit from refusals, every worker asks here
for a slot before it creates: slots are spaced about `1 / rate` apart, and a slot missed in the last
second may still be taken late (`create_pace`), so no sliding minute ever holds more creates than the
rate allows (docs/architecture.md#pacing-creates).

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

from dataclasses import dataclass
from datetime import datetime, timedelta
from time import sleep

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .errors import clamp_wait
from .models import CreatePacer
from .rates import parse_rate

NAME = "replicate-create"
MAX_SLEEP_SECONDS = 0.05  # a worker sleeps this long at most for its slot; longer waits go back to the queue
BURST_SECONDS = 1.0  # slots nobody took this recently may still be taken (`create_pace`)
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
    tolerance: float  # how far in the past a slot nobody took may still be taken


def create_pace() -> Pace | None:
    """The slots of STAGING_CREATE_RATE; None when creates are not paced.

    Slots that nobody took in the last `BURST_SECONDS` (at most a tenth of a minute's) may still be
    taken late, so that a moment when every worker is busy collecting costs no creates. To keep every
    minute within the rate all the same, the slots are spaced for the rest: at 600/m, 10 late slots and
    one every 60/590 s, so no 60-second window holds more than 600 (docs/architecture.md#pacing-creates).
    """
    rate = parse_rate(settings.STAGING_CREATE_RATE)
    if rate is None:
        return None
    per_minute = rate * 60
    burst = min(int(rate * BURST_SECONDS), int(per_minute // 10))
    interval = min(60.0 / (per_minute - burst), _LONGEST_INTERVAL)
    return Pace(interval=interval, tolerance=burst * interval)


def _row(now: datetime) -> CreatePacer:
    row = CreatePacer.objects.filter(name=NAME).first()
    if row is not None:
        return row
    try:
        with transaction.atomic():  # a savepoint: losing the race to create it must not break the caller
            # At rest: the late slots of `create_pace` are free (its tolerance bounds how many).
            return CreatePacer.objects.create(name=NAME, next_slot_at=now - timedelta(days=1), line_ends_at=now)
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
        wait = max(0.0, (slot - now).total_seconds())
        if wait <= max_sleep and not (behind_line and row.line_ends_at > now):
            changes = {"next_slot_at": slot + step}
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
