"""Personal API tokens. The table keeps its first name (`models_config_apitoken`): the model moved here
from `models_config` without touching the database (see `migrations/0001_initial.py`).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models


class Scope(models.TextChoices):
    """What a token may be used for (docs/architecture.md#apitoken): an area of the API, read or write.

    A scope only narrows what the token's user may do; the user's permissions still apply. A session
    (the admin's cookie) has no scopes and is not limited by them.
    """

    CONFIG_READ = "config:read", "read model configs, metrics and spend"
    CONFIG_WRITE = "config:write", "change model configs"
    JOBS_READ = "jobs:read", "read jobs and their files"
    JOBS_WRITE = "jobs:write", "create, reprocess and cancel jobs"


def all_scopes() -> list[str]:
    """A new token's scopes unless narrowed: everything its user may do."""
    return list(Scope.values)


class ApiToken(models.Model):
    """A personal token for the HTTP API. Only a SHA-256 hash is stored; the token is shown once."""

    PREFIX = "stg_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=all_scopes, help_text="What the token may be used for (api.models.Scope).")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from then on; empty: never.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "models_config_apitoken"
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    def refusal(self, now: datetime) -> str | None:
        """Why this token may no longer be used at `now` (revoked, expired), or None while it is good."""
        if self.revoked_at is not None:
            return f"This API token was revoked at {self.revoked_at:%Y-%m-%d %H:%M} UTC."
        if self.expires_at is not None and self.expires_at <= now:
            return f"This API token expired at {self.expires_at:%Y-%m-%d %H:%M} UTC."
        return None

    def allows(self, scope: str) -> bool:
        return scope in (self.scopes or [])
