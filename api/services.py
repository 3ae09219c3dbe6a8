"""Writes of the API app: personal tokens. The admin and the tokens API call these; they write no rows themselves."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from .models import ApiToken, Scope, all_scopes


class UnknownTokenError(LookupError):
    """No token of that id that the caller may manage (answered 404: ids of other people's tokens leak nothing)."""


def create_api_token(
    user: AbstractBaseUser, name: str, scopes: Iterable[str] | None = None, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a personal API token; the raw token is returned once and never stored.

    `scopes` narrow what it may be used for (every scope when None); unknown scopes raise ValueError.
    """
    requested = all_scopes() if scopes is None else list(scopes)
    unknown = set(requested) - set(Scope.values)
    if unknown:
        raise ValueError(f"Unknown scope(s): {', '.join(sorted(unknown))}; choose from {', '.join(Scope.values)}.")
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        user=user,
        name=name.strip() or "API token",
        token_hash=ApiToken.hash(raw),
        scopes=[scope for scope in Scope.values if scope in requested],
        expires_at=expires_at,
    )
    return token, raw


def manageable_tokens(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The tokens `user` may list and revoke: a superuser every token, anybody else their own."""
    tokens = ApiToken.objects.select_related("user")
    return tokens if user.is_superuser else tokens.filter(user=user.pk)


def revoke_tokens(tokens: QuerySet[ApiToken]) -> int:
    """Revoke `tokens` now; already revoked ones keep their first time. Returns how many this call revoked."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def revoke_api_token(user: AbstractBaseUser, token_id: int) -> ApiToken:
    """Revoke one token `user` may manage (idempotent); raises `UnknownTokenError` for any other id."""
    tokens = manageable_tokens(user).filter(pk=token_id)
    if not tokens.exists():
        raise UnknownTokenError(f"No API token {token_id}.")
    revoke_tokens(tokens)
    return tokens.get()
