"""`manage.py qcluster`: django-q2's own, which first checks that `migrate` created the schedules.

A cluster without them runs queued tasks but never polls, retries or enforces deadlines, silently;
one warning at start names the fix. It also turns the database pool off for itself before forking
its processes (docs/operations.md#connection-budget). Django runs this command instead of django-q2's
because `staging` is listed before `django_q` in `INSTALLED_APPS` (the first app listed wins).
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from staging.schedules import warn_if_schedules_missing
from stagingsite.database import use_plain_connections


class Command(DjangoQClusterCommand):
    help = "Starts a Django Q cluster (warning first when the queue schedules are missing: run `migrate`)."

    def handle(self, *args: Any, **options: Any) -> None:
        use_plain_connections()  # before any connection: a pool must not be copied into forked children
        warn_if_schedules_missing()
        connections.close_all()  # the main process only waits for its sentinel: it keeps no connection
        super().handle(*args, **options)
