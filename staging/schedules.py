"""The queue's recurring tasks, declared once and written to django-q2's `Schedule` table by `migrate`.

Without these rows a `qcluster` runs queued tasks but never polls for lost webhooks, never starts due
retries and never enforces deadlines, so they are created on `post_migrate` (like the default site of
`django.contrib.sites`), not by a command someone has to remember. Every deploy's `migrate` brings a
changed or removed declaration in; rows whose name carries `PREFIX` belong to this module.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from croniter import croniter
from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, router, transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.utils import localtime

logger = logging.getLogger(__name__)

PREFIX = "staging: "
FIX = "run `python manage.py migrate`"


@dataclass(frozen=True)
class EveryMinutes:
    """Every N minutes, counted from when the row was created."""

    minutes: int

    def __post_init__(self) -> None:
        if self.minutes < 1:
            raise ValueError(f"A schedule runs at most every minute, not every {self.minutes}.")

    def fields(self) -> dict[str, Any]:
        return {"schedule_type": Schedule.MINUTES, "minutes": self.minutes, "cron": None}

    def first_run(self, now: datetime) -> datetime:
        return now

    def matches(self, row: Schedule) -> bool:
        return row.schedule_type == Schedule.MINUTES and row.minutes == self.minutes


@dataclass(frozen=True)
class DailyAt:
    """Once a day at `HH:MM` wall-clock time in the cluster's time zone (Q_CLUSTER `time_zone`)."""

    at: str

    def __post_init__(self) -> None:
        self.clock()  # a typo fails at import, not at 03:00

    def clock(self) -> time:
        try:
            hour, minute = (int(part) for part in self.at.split(":"))
            return time(hour, minute)
        except ValueError:
            raise ValueError(f"Give the time of day as HH:MM, not {self.at!r}.") from None

    def fields(self) -> dict[str, Any]:
        return {"schedule_type": Schedule.DAILY, "minutes": None, "cron": None}

    def first_run(self, now: datetime) -> datetime:
        """The next `HH:MM` after `now`; django-q2 then adds a day per run (keeping it across DST)."""
        local = localtime(now)
        day = local.date()
        if local.time() >= self.clock():
            day += timedelta(days=1)
        return datetime.combine(day, self.clock(), tzinfo=local.tzinfo)

    def matches(self, row: Schedule) -> bool:
        return (
            row.schedule_type == Schedule.DAILY
            and row.next_run is not None
            and localtime(row.next_run).time() == self.clock()
        )


@dataclass(frozen=True)
class Cron:
    """A cron line (`minute hour day month weekday`) in the cluster's time zone, read by croniter."""

    line: str

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.line):
            raise ValueError(f"Not a cron line: {self.line!r}.")

    def fields(self) -> dict[str, Any]:
        return {"schedule_type": Schedule.CRON, "minutes": None, "cron": self.line}

    def first_run(self, now: datetime) -> datetime:
        return croniter(self.line, localtime(now)).get_next(datetime)

    def matches(self, row: Schedule) -> bool:
        return row.schedule_type == Schedule.CRON and row.cron == self.line


When = EveryMinutes | DailyAt | Cron


@dataclass(frozen=True)
class Recurring:
    """One schedule: run the task at dotted path `func` `when` says, forever."""

    name: str
    func: str
    when: When

    def __post_init__(self) -> None:
        if not self.name.startswith(PREFIX):
            raise ValueError(f"Schedule names start with {PREFIX!r} so that removed ones can be found: {self.name!r}")


SCHEDULES: tuple[Recurring, ...] = (
    Recurring("staging: poll in-flight predictions", "staging.tasks.poll_in_flight", EveryMinutes(1)),
    Recurring("staging: enforce attempt deadlines", "staging.tasks.enforce_deadlines", EveryMinutes(1)),
    Recurring("staging: start due retries", "staging.tasks.retry_due", EveryMinutes(1)),
    Recurring("staging: purge expired data", "staging.tasks.purge", DailyAt("03:30")),
    # Minutes, not a daily time: the spend day is UTC whatever the cluster's time zone, and budget also
    # frees up during a day (docs/architecture.md#spend-caps).
    Recurring("staging: resume held attempts", "staging.tasks.resume_held", EveryMinutes(5)),
    Recurring("staging: refresh the webhook secret", "staging.tasks.refresh_webhook_secret", DailyAt("04:10")),
)


def ensure_schedules(using: str = DEFAULT_DB_ALIAS, *, now: datetime | None = None) -> list[Schedule]:
    """Make the `Schedule` rows match `SCHEDULES`: create, update by name, delete what was removed.

    A row whose timing is unchanged keeps its `next_run`, so a `migrate` between two runs neither
    skips nor repeats one; a changed timing starts over from `now`. When everything matches, nothing
    is written.
    """
    now = now or timezone.now()
    rows = Schedule.objects.using(using)
    with transaction.atomic(using=using):
        declared_names = {declared.name for declared in SCHEDULES}
        ours: dict[str, Schedule] = {}
        surplus = []  # removed declarations, and second rows of one name
        for row in rows.select_for_update().filter(name__startswith=PREFIX).order_by("pk"):
            if row.name in ours or row.name not in declared_names:
                surplus.append(row.pk)
            else:
                ours[row.name] = row
        if surplus:
            rows.filter(pk__in=surplus).delete()
        result = []
        for declared in SCHEDULES:
            wanted = {"func": declared.func, "repeats": -1, **declared.when.fields()}
            row = ours.get(declared.name)
            if row is None:
                # Not save(): it would recompute a cron line's first run from the wall clock, not from `now`.
                (row,) = rows.bulk_create(
                    [Schedule(name=declared.name, next_run=declared.when.first_run(now), **wanted)]
                )
            else:
                if not declared.when.matches(row):
                    wanted["next_run"] = declared.when.first_run(now)
                changed = [field for field, value in wanted.items() if getattr(row, field) != value]
                if changed:
                    for field in changed:
                        setattr(row, field, wanted[field])
                    row.save(using=using, update_fields=changed)
            result.append(row)
    return result


def missing_schedules(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Names of declared schedules that have no row (all of them when the table does not exist yet)."""
    names = [declared.name for declared in SCHEDULES]
    try:
        present = set(Schedule.objects.using(using).filter(name__in=names).values_list("name", flat=True))
    except DatabaseError:
        return names
    return [name for name in names if name not in present]


def warn_if_schedules_missing(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Log one warning naming the fix when the schedules are missing; `qcluster` calls this at start."""
    missing = missing_schedules(using)
    if missing:
        logger.warning(
            "%d of %d queue schedules are missing (%s), so this cluster never starts those tasks (polling "
            "for lost webhooks, due retries and deadlines among them). To create them, %s.",
            len(missing),
            len(SCHEDULES),
            ", ".join(missing),
            FIX,
        )
    return missing


def create_schedules(
    app_config: AppConfig,
    verbosity: int = 2,
    interactive: bool = True,
    using: str = DEFAULT_DB_ALIAS,
    apps=global_apps,
    **kwargs: Any,
) -> None:
    """`post_migrate` receiver of the staging app (see `StagingConfig.ready`)."""
    if app_config.label != "staging":
        return
    try:
        apps.get_model("django_q", "Schedule")  # gone after `migrate django_q zero`
    except LookupError:
        return
    if not router.allow_migrate_model(using, Schedule):
        return
    ensure_schedules(using)
    if verbosity >= 2:
        kwargs.get("stdout", sys.stdout).write(f"Queue schedules up to date: {', '.join(d.name for d in SCHEDULES)}\n")
