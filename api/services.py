"""Writes of the API app: personal tokens. The admin calls these; it writes no rows itself."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from .models import ApiToken


def create_api_token(user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """Create a personal API token; the raw token is returned once and never stored."""
    raw = ApiToken.generate()
    token = ApiToken.objects.create(user=user, name=name.strip() or "API token", token_hash=ApiToken.hash(raw))
    return token, raw
