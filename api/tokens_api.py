"""The tokens API (mounted at /api/v1/tokens): list your API tokens and revoke one.

Any live token may be used here whatever its scopes (`auth.UNSCOPED`), so that a token someone fears
leaked can revoke itself. A superuser manages every token, anybody else their own (`services.manageable_tokens`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from . import services
from .models import ApiToken
from .schemas import error_responses

router = Router(tags=["API tokens"])


class TokenOut(Schema):
    id: int
    name: str
    user: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="The secret itself is never shown again after creation.")


def _token_out(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.pk,
        "name": token.name,
        "user": token.user.get_username(),
        "scopes": token.scopes,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "last_used_at": token.last_used_at,
    }


@router.get("", response={200: list[TokenOut], **error_responses()}, summary="Your API tokens")
def list_tokens(request: HttpRequest) -> list[dict[str, Any]]:
    return [_token_out(token) for token in services.manageable_tokens(request.auth).order_by("-created_at", "-pk")]


@router.delete(
    "/{int:token_id}", response={200: TokenOut, **error_responses(404)}, summary="Revoke an API token (for good)"
)
def revoke_token(request: HttpRequest, token_id: int) -> dict[str, Any]:
    """Revoked at once for every process; revoking a revoked token changes nothing."""
    return _token_out(services.revoke_api_token(request.auth, token_id))
