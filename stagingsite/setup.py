"""First-run set-up that is not data (the first superuser): idempotent, run by `bootstrap`.

Config rows and queue schedules are data every deploy needs, so `migrate` creates them
(`models_config.management`, `staging.schedules`).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model


@dataclass(frozen=True)
class SuperuserResult:
    username: str
    created: bool
    generated_password: str | None = None  # shown once, never stored in clear


def ensure_superuser() -> SuperuserResult | None:
    """Create the first superuser, never with a fixed password.

    With DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD set, that account is created (or
    its password updated to match). Otherwise, when no superuser exists yet, `admin` is created with
    a generated password that the caller prints once. When one exists, nothing happens.
    """
    user_model = get_user_model()
    username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip()
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
    if username and password:
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        return SuperuserResult(username=username, created=created)
    if user_model.objects.filter(is_superuser=True).exists():
        return None
    username = username or "admin"
    generated = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=generated)
    return SuperuserResult(username=username, created=True, generated_password=generated)
