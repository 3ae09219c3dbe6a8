"""What "ready" means for `/readyz` (docs/operations.md#health-checks).

Ready = the database answers, every migration is applied, the queue schedules exist, and a queue
cluster was seen in the last two minutes. Each check is cheap (a few indexed or tiny queries; the
migration graph is read once per process and only until it is found applied), so a load balancer can
ask every few seconds. A failing check returns a short reason a person can act on; database errors are
logged in full but answered only by their class, since `/readyz` is public.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django_q.models import Task
from django_q.status import Stat

from staging.schedules import FIX, SCHEDULES, missing_schedules

logger = logging.getLogger(__name__)

QUEUE_SEEN_WITHIN = timedelta(minutes=2)
OK = "ok"

_migrations_applied: set[str] = set()  # aliases found fully migrated; a deploy restarts the processes


def database_reason(using: str = DEFAULT_DB_ALIAS) -> str | None:
    try:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any failure to reach it means "not ready", never a 500
        logger.warning("readyz: database %r unreachable: %s", using, exc)
        return f"unreachable ({type(exc).__name__})"
    return None


def migrations_reason(using: str = DEFAULT_DB_ALIAS) -> str | None:
    if using in _migrations_applied:
        return None
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _backwards in plan[:3])
        more = f" and {len(plan) - 3} more" if len(plan) > 3 else ""
        return f"{len(plan)} not applied ({names}{more}): {FIX}"
    _migrations_applied.add(using)
    return None


def schedules_reason(using: str = DEFAULT_DB_ALIAS) -> str | None:
    missing = missing_schedules(using)
    return f"missing {', '.join(missing)}: {FIX}" if missing else None


def queue_reason(now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> str | None:
    """None when a `qcluster` was seen within `QUEUE_SEEN_WITHIN`.

    Two signs, either enough: the cluster's own status in django-q2's cache (`Stat.get_all()`, visible
    across processes only with a shared cache, `REDIS_URL`), or, with any cache, a result of a task that
    a cluster's scheduler started from one of our schedules (its group is the schedule's name; they run
    every minute), finished within the window. `stage --wait`'s inline runner never leaves such a result.
    """
    since = (now or timezone.now()) - QUEUE_SEEN_WITHIN
    try:
        if any(stat.timestamp >= since for stat in Stat.get_all()):
            return None
    except Exception as exc:  # an unreachable shared cache: fall back to the database's evidence
        logger.warning("readyz: could not read the queue clusters' status from the cache: %s", exc)
    names = [declared.name for declared in SCHEDULES]
    if Task.objects.using(using).filter(group__in=names, stopped__gte=since).exists():
        return None
    minutes = int(QUEUE_SEEN_WITHIN.total_seconds() // 60)
    return f"no queue cluster seen in the last {minutes} minutes: start `python manage.py qcluster`"


def readiness(now: datetime | None = None) -> dict[str, str]:
    """Each check's name -> "ok" or why it fails; the checks after an unreachable database are not run."""
    results: dict[str, str] = {}
    database = database_reason()
    results["database"] = database or OK
    checks: dict[str, Callable[[], str | None]] = {
        "migrations": migrations_reason,
        "schedules": schedules_reason,
        "queue": lambda: queue_reason(now),
    }
    for name, check in checks.items():
        if database:
            results[name] = "not checked: the database is unreachable"
            continue
        try:
            results[name] = check() or OK
        except Exception as exc:  # a check that breaks says so instead of answering 500
            logger.exception("readyz: the %s check failed", name)
            results[name] = f"check failed ({type(exc).__name__})"
    return results


def failing(results: dict[str, str]) -> list[str]:
    return [name for name, result in results.items() if result != OK]
