"""`manage.py qcluster`: django-q2's own, which first checks that `migrate` created the schedules.

A cluster without them runs queued tasks but never polls, retries or enforces deadlines, silently;
one warning at start names the fix. Django runs this command instead of django-q2's because
`staging` is listed before `django_q` in `INSTALLED_APPS` (the first app listed wins).
"""

from __future__ import annotations

from typing import Any

from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from staging.schedules import warn_if_schedules_missing


class Command(DjangoQClusterCommand):
    help = "Starts a Django Q cluster (warning first when the queue schedules are missing: run `migrate`)."

    def handle(self, *args: Any, **options: Any) -> None:
        warn_if_schedules_missing()
        super().handle(*args, **options)
