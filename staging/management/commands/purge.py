"""`manage.py purge [--dry-run]`: apply the retention settings now (the daily schedule does the same)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from staging import retention


class Command(BaseCommand):
    help = (
        "Delete staged outputs (with their derivatives) older than STAGING_RETENTION_DAYS (unset: kept), webhook "
        "deliveries older than STAGING_WEBHOOK_RETENTION_DAYS and queue task results older than "
        "STAGING_TASK_RESULT_RETENTION_DAYS. Originals stay while their job exists. Runs daily on its own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Say what would be deleted; delete nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(str(retention.purge(dry_run=options["dry_run"])))
