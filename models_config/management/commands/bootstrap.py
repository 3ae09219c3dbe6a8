"""`manage.py bootstrap`: the first superuser, the one piece of first-run set-up that is not data."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from stagingsite.setup import ensure_superuser

FROM_MIGRATE = "Config rows (v1 of the code defaults) and the queue schedules come from `python manage.py migrate`."


class Command(BaseCommand):
    help = (
        "Create the first superuser (from DJANGO_SUPERUSER_USERNAME/PASSWORD, or 'admin' with a generated "
        f"password printed once). Safe to run on every start. {FROM_MIGRATE}"
    )

    def handle(self, *args: Any, **options: Any) -> None:
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
        elif result:
            self.stdout.write(f"Superuser '{result.username}' exists, with the password in DJANGO_SUPERUSER_PASSWORD.")
        else:
            self.stdout.write("A superuser exists already.")
        self.stdout.write(FROM_MIGRATE)
