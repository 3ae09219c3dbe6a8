"""`manage.py bootstrap`: idempotent first-run setup (config rows, queue schedules, first superuser)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from models_config.services import ensure_config_rows
from stagingsite.setup import ensure_superuser


class Command(BaseCommand):
    help = (
        "Give every registered model a config row, create the queue schedules, and create the first "
        "superuser (from DJANGO_SUPERUSER_USERNAME/PASSWORD, or 'admin' with a generated password "
        "printed once). Safe to run on every start."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        created = ensure_config_rows()
        if created:
            self.stdout.write(f"Config rows created with code defaults: {', '.join(created)}")
        try:
            from staging.tasks import ensure_schedules
        except ImportError:  # the pipeline is optional for config-only deployments
            pass
        else:
            ensure_schedules()
        result = ensure_superuser()
        if result and result.generated_password:
            self.stdout.write(
                self.style.WARNING(
                    f"Created superuser '{result.username}' with password: {result.generated_password}\n"
                    "It is shown only this once: note it now, or change it with "
                    f"`python manage.py changepassword {result.username}`."
                )
            )
        elif result and result.created:
            self.stdout.write(f"Created superuser '{result.username}' from DJANGO_SUPERUSER_USERNAME.")
