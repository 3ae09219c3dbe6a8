from typing import Any

from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def create_cache_table(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """`migrate` creates the database cache's table (idempotent; nothing when the cache is Redis), so
    the shared rate limits need no extra set-up step (docs/architecture.md#rate-limits)."""
    call_command("createcachetable", database=using, verbosity=0)


class ApiConfig(AppConfig):
    """What every HTTP API shares: tokens, authentication, permissions, rate limits, error answers, the ninja root."""

    name = "api"
    verbose_name = "HTTP API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from .throttling import record_failed_login

        post_migrate.connect(create_cache_table, sender=self)
        user_login_failed.connect(record_failed_login, dispatch_uid="api.record_failed_login")
