"""The queue schedules: declared in `staging.schedules`, written by `migrate`, checked by `qcluster`."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command, get_commands
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.conf import Conf
from django_q.models import Schedule

from staging import schedules
from staging.schedules import Cron, DailyAt, EveryMinutes, Recurring
from tests.fixtures.waiting import wait_until

TICKS = {"staging.tasks.poll_in_flight", "staging.tasks.enforce_deadlines", "staging.tasks.retry_due"}
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)  # a Saturday


def migrate() -> None:
    call_command("migrate", interactive=False, verbosity=0, stdout=StringIO())


def rows() -> dict[str, tuple]:
    return {
        s.name: (s.pk, s.func, s.schedule_type, s.minutes, s.cron, s.repeats, s.next_run)
        for s in Schedule.objects.order_by("name")
    }


def assert_the_declared_schedules() -> None:
    stored = {s.name: s for s in Schedule.objects.filter(name__startswith=schedules.PREFIX)}
    assert set(stored) == {declared.name for declared in schedules.SCHEDULES}
    for declared in schedules.SCHEDULES:
        row = stored[declared.name]
        assert (row.func, row.repeats) == (declared.func, -1) and declared.when.matches(row)
    ticks = [s for s in stored.values() if s.func in TICKS]
    assert len(ticks) == 3 and all((s.schedule_type, s.minutes) == (Schedule.MINUTES, 1) for s in ticks)
    purge = stored["staging: purge expired data"]
    assert (purge.func, purge.schedule_type) == ("staging.tasks.purge", Schedule.DAILY)


@pytest.mark.django_db
def test_the_migrated_test_database_has_the_schedules():
    assert_the_declared_schedules()
    assert schedules.missing_schedules() == []


@pytest.mark.django_db
def test_migrate_alone_creates_them():
    Schedule.objects.all().delete()
    assert schedules.missing_schedules() == [d.name for d in schedules.SCHEDULES]
    migrate()
    assert_the_declared_schedules()


@pytest.mark.django_db
def test_migrating_twice_changes_nothing():
    before = rows()
    with CaptureQueriesContext(connection) as queries:
        migrate()
    assert rows() == before
    written = [q["sql"] for q in queries.captured_queries if WRITE.match(q["sql"]) and "django_q_schedule" in q["sql"]]
    assert written == []


@pytest.mark.django_db
def test_ensure_schedules_is_idempotent():
    schedules.ensure_schedules()
    Schedule.objects.filter(func__in=TICKS).update(minutes=30)
    ensured = schedules.ensure_schedules()
    assert Schedule.objects.filter(name__startswith="staging:").count() == len(schedules.SCHEDULES)
    assert {s.func for s in ensured} == {declared.func for declared in schedules.SCHEDULES}
    assert_the_declared_schedules()


@pytest.mark.django_db
def test_a_changed_declaration_updates_its_row_on_the_next_migrate_and_a_removed_one_goes(monkeypatch):
    Schedule.objects.create(name="someone's own", func="staging.tasks.retry_due", schedule_type=Schedule.HOURLY)
    poll, deadlines, _retries = schedules.SCHEDULES[:3]
    kept_next_run = Schedule.objects.get(name=deadlines.name).next_run
    changed = Recurring(poll.name, poll.func, EveryMinutes(5))
    added = Recurring("staging: purge old outputs", "staging.tasks.retry_due", DailyAt("03:30"))
    monkeypatch.setattr(schedules, "SCHEDULES", (changed, deadlines, added))
    migrate()
    assert Schedule.objects.get(name=poll.name).minutes == 5
    assert Schedule.objects.get(name=deadlines.name).next_run == kept_next_run  # unchanged: not rescheduled
    assert Schedule.objects.get(name=added.name).schedule_type == Schedule.DAILY
    assert not Schedule.objects.filter(name=_retries.name).exists()
    assert Schedule.objects.filter(name="someone's own").exists()  # not ours: left alone


@pytest.mark.django_db
def test_duplicates_of_a_name_are_merged_into_one_row():
    first = Schedule.objects.get(name=schedules.SCHEDULES[0].name)
    Schedule.objects.create(name=first.name, func="staging.tasks.retry_due", schedule_type=Schedule.HOURLY)
    schedules.ensure_schedules()
    assert list(Schedule.objects.filter(name=first.name).values_list("pk", flat=True)) == [first.pk]


@pytest.mark.django_db
def test_daily_at_runs_next_at_that_wall_clock_time_in_the_cluster_time_zone(monkeypatch):
    monkeypatch.setattr(Conf, "TIME_ZONE", "Europe/Paris")  # UTC+1 in March before the 29th
    daily = Recurring("staging: daily", "staging.tasks.retry_due", DailyAt("03:30"))
    monkeypatch.setattr(schedules, "SCHEDULES", (daily,))
    (row,) = schedules.ensure_schedules(now=NOW)  # 13:00 in Paris: today's 03:30 has passed
    row.refresh_from_db()
    assert (row.schedule_type, row.minutes, row.cron, row.repeats) == (Schedule.DAILY, None, None, -1)
    assert row.next_run == datetime(2026, 3, 15, 2, 30, tzinfo=UTC)
    assert row.calculate_next_run() == datetime(2026, 3, 16, 2, 30, tzinfo=UTC)  # django-q2's next day

    Schedule.objects.all().delete()
    (early,) = schedules.ensure_schedules(now=datetime(2026, 3, 14, 1, 0, tzinfo=UTC))  # 02:00 in Paris
    assert early.next_run == datetime(2026, 3, 14, 2, 30, tzinfo=UTC)  # still today

    schedules.ensure_schedules(now=NOW + timedelta(hours=5))  # same declaration: keeps its next run
    assert Schedule.objects.get(name=daily.name).next_run == early.next_run
    monkeypatch.setattr(schedules, "SCHEDULES", (Recurring(daily.name, daily.func, DailyAt("04:15")),))
    schedules.ensure_schedules(now=NOW)
    assert Schedule.objects.get(name=daily.name).next_run == datetime(2026, 3, 15, 3, 15, tzinfo=UTC)


@pytest.mark.django_db
def test_a_cron_line_becomes_a_cron_schedule_with_its_next_run(monkeypatch):
    weekdays = Recurring("staging: weekdays", "staging.tasks.retry_due", Cron("*/15 6-18 * * 1-5"))
    monkeypatch.setattr(schedules, "SCHEDULES", (weekdays,))
    (row,) = schedules.ensure_schedules(now=NOW)  # Saturday noon: next is Monday 06:00
    row.refresh_from_db()
    assert (row.schedule_type, row.cron, row.minutes, row.repeats) == (Schedule.CRON, "*/15 6-18 * * 1-5", None, -1)
    assert row.next_run == datetime(2026, 3, 16, 6, 0, tzinfo=UTC)
    monkeypatch.setattr(schedules, "SCHEDULES", (Recurring(weekdays.name, weekdays.func, Cron("0 3 * * *")),))
    schedules.ensure_schedules(now=NOW)
    row.refresh_from_db()
    assert (row.cron, row.next_run) == ("0 3 * * *", datetime(2026, 3, 15, 3, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    "declare",
    [
        lambda: EveryMinutes(0),
        lambda: DailyAt("25:00"),
        lambda: DailyAt("3 pm"),
        lambda: Cron("every day"),
        lambda: Recurring("poll", "staging.tasks.poll_in_flight", EveryMinutes(1)),  # no "staging: " prefix
    ],
)
def test_a_bad_declaration_fails_when_it_is_written(declare):
    with pytest.raises(ValueError):
        declare()


@pytest.mark.django_db
def test_the_receiver_leaves_other_apps_and_databases_it_may_not_migrate_alone(settings):
    Schedule.objects.all().delete()
    schedules.create_schedules(apps.get_app_config("models_config"), verbosity=0)
    assert not Schedule.objects.exists()
    settings.DATABASE_ROUTERS = [f"{__name__}.NoQueueMigrations"]
    schedules.create_schedules(apps.get_app_config("staging"), verbosity=0)
    assert not Schedule.objects.exists()
    settings.DATABASE_ROUTERS = []
    schedules.create_schedules(apps.get_app_config("staging"), verbosity=0)
    assert_the_declared_schedules()


class NoQueueMigrations:
    def allow_migrate(self, db, app_label, **hints):
        return app_label != "django_q"


@pytest.mark.django_db
def test_missing_schedules_log_one_warning_naming_the_fix(caplog):
    caplog.set_level(logging.WARNING, logger="staging.schedules")
    assert schedules.warn_if_schedules_missing() == []
    assert caplog.records == []
    Schedule.objects.filter(name=schedules.SCHEDULES[0].name).delete()
    assert schedules.warn_if_schedules_missing() == [schedules.SCHEDULES[0].name]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "run `python manage.py migrate`" in record.getMessage()
    assert schedules.SCHEDULES[0].name in record.getMessage()


def test_manage_py_qcluster_is_the_staging_app_s_which_checks_first():
    """Django runs the command of the app listed first in INSTALLED_APPS: staging must precede django_q."""
    assert get_commands()["qcluster"] == "staging"
    assert settings.INSTALLED_APPS.index("staging") < settings.INSTALLED_APPS.index("django_q")


# --- A real qcluster ------------------------------------------------------------------------------

WARNING = "run `python manage.py migrate`"


@contextlib.contextmanager
def qcluster_output(env: dict[str, str], log_path: Path) -> Iterator[Callable[[], str]]:
    """A real `manage.py qcluster` child with two workers, once it runs; yields a reader of its output."""
    with log_path.open("wb") as log:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            env={**env, "Q_WORKERS": "2", "LOG_LEVEL": "INFO"},
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        assert wait_until(lambda: "running." in output(), timeout=60, step=0.1), output()
        yield output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGKILL)  # nothing to finish: it ran no task
        cluster.wait(timeout=10)


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_qcluster_started_without_schedules_warns_once_naming_the_fix(subprocess_env, tmp_path: Path):
    Schedule.objects.all().delete()  # committed, so the child sees it (the flush afterwards brings them back)
    with qcluster_output(subprocess_env, tmp_path / "qcluster.log") as output:
        assert output().count(WARNING) == 1, output()
        n = len(schedules.SCHEDULES)
        assert f"{n} of {n} queue schedules are missing" in output()


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_qcluster_with_the_schedules_in_place_says_nothing_about_them(subprocess_env, tmp_path: Path):
    with qcluster_output(subprocess_env, tmp_path / "qcluster.log") as output:
        assert WARNING not in output()
