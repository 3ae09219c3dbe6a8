"""Authentication and permissions for every router of the HTTP API.

Two ways in: a personal token (`Authorization: Bearer stg_…`, looked up by its SHA-256 hash, no CSRF
since a browser never sends it by itself) or the admin's session cookie (CSRF enforced on unsafe
methods, as for any cookie). Authentication only says *who*; `require_perm` then says *may they*:
anonymous → 401, authenticated but not staff or lacking the permission → 403.

A token must also be alive (not expired, not revoked: else 401 saying which) and hold the scope of the
area it is used on (`api_auth(area)`, set where each router is mounted in `api/root.py`: a read
method needs `<area>:read`, any other `<area>:write`; else 403 naming the scope). A session has no
scopes. Unknown tokens count against their address's failure budget (`throttling.auth_failures`):
past it, every bearer request from there is a 429 before any token is looked up.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from django.middleware.csrf import (
    REASON_BAD_ORIGIN,
    REASON_CSRF_TOKEN_MISSING,
    REASON_NO_CSRF_COOKIE,
    CsrfViewMiddleware,
)
from django.utils import timezone
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer

from .models import ApiToken, Scope
from .throttling import auth_failures

csrf_logger = logging.getLogger("django.security.csrf")  # where Django's own check logs its refusals


READ_METHODS = ("GET", "HEAD", "OPTIONS")
UNSCOPED = ""  # the area of the tokens API: any live token may list and revoke tokens


def required_scopes(area: str | None, method: str) -> list[str]:
    """The scopes a token needs for `method` on an `area` ("config", "jobs"); every scope where none is named."""
    if area is None:
        return list(Scope.values)
    if area == UNSCOPED:
        return []
    return [f"{area}:{'read' if method in READ_METHODS else 'write'}"]


class BearerTokenAuth(HttpBearer):
    """A personal API token (created in the admin), alive and holding the area's scope. Records when it was
    last used; the request keeps the row as `request.api_token` (the rate limit counts per token)."""

    def __init__(self, area: str | None = None) -> None:
        super().__init__()
        self.area = area

    def __call__(self, request: HttpRequest) -> AbstractBaseUser | None:
        # ninja's HttpBearer logs the whole header for other schemes in DEBUG: a credential in a log.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.authenticate(request, token.strip()) if scheme.lower() == "bearer" else None

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        auth_failures.check(request)
        row = ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash(token)).first() if token else None
        if row is None or not row.user.is_active:
            auth_failures.record_failure(request)
            return None  # never echo the token: the answer is a plain 401
        now = timezone.now()
        refusal = row.refusal(now)
        if refusal is not None:
            raise HttpError(401, f"{refusal} Create a new token in the admin.")
        missing = [scope for scope in required_scopes(self.area, request.method or "GET") if not row.allows(scope)]
        if missing:
            raise HttpError(403, f"This API token lacks the scope {' and '.join(missing)}.")
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        request.user = row.user  # so code below sees one user, whichever way they came in
        request.api_token = row  # type: ignore[attr-defined]
        return row.user


class SessionAuth(APIKeyCookie):
    """The Django session of a logged-in user, with Django's CSRF check on unsafe methods.

    Unlike ninja's own `SessionAuth`, an anonymous request gets a 401 (not a CSRF 403), and a request
    that carries an `Authorization` header is left to the token auth, so a bad token is a 401 even
    from a browser that also has a session.
    """

    param_name: str = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        user = getattr(request, "user", None)
        if "Authorization" in request.headers or user is None or not user.is_authenticated:
            return None
        if not getattr(request, "_ninja_csrf_exempt", False):
            reason = csrf_refusal(request)
            if reason is not None:
                raise HttpError(403, csrf_detail(reason))
        return request.COOKIES.get(self.param_name) or "session"

    def authenticate(self, request: HttpRequest, key: str | None) -> AbstractBaseUser | None:
        return request.user if key is not None else None


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, rule for rule, answering *why* it refused instead of rendering its HTML page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        csrf_logger.warning("Forbidden (%s): %s", reason, request.path)
        return reason


def _no_view(request: HttpRequest) -> None:
    """The view `_CsrfCheck` is asked about: not `csrf_exempt`, so the check runs."""


def csrf_refusal(request: HttpRequest) -> str | None:
    """Django's reason for refusing this unsafe request (e.g. "CSRF token missing."), or None when it passes."""
    check = _CsrfCheck(_no_view)
    request.csrf_processing_done = False  # type: ignore[attr-defined]
    check.process_request(request)
    return check.process_view(request, _no_view, (), {})


def csrf_detail(reason: str) -> str:
    """Django's reason and what to do about it: a foreign Origin is not fixed by sending a token."""
    if reason.startswith(REASON_BAD_ORIGIN.partition("%s")[0]):
        hint = (
            "The request comes from another site: send it from the admin's own origin (a trusted origin is "
            "listed in DJANGO_CSRF_TRUSTED_ORIGINS), or authenticate with a Bearer token instead of the session."
        )
    elif reason.startswith("Referer checking failed"):
        hint = "Over HTTPS a request without an Origin header must carry a Referer of this site."
    elif reason == REASON_NO_CSRF_COOKIE:
        hint = "Open an admin page first so that the csrftoken cookie is set, then send its value in X-CSRFToken."
    elif reason == REASON_CSRF_TOKEN_MISSING:
        hint = "Send the csrftoken cookie's value in the X-CSRFToken header."
    else:  # a token of the wrong format, or one that does not match the cookie
        hint = "The X-CSRFToken header must be the csrftoken cookie's current value (reload the page if it changed)."
    return f"CSRF check failed: {reason} {hint}"


def api_auth(area: str | None = None) -> list[Any]:
    """The auth list of the API root or of a router mounted on it: token first, then the session.

    `area` names the token scopes the router's operations need (`required_scopes`).
    """
    return [BearerTokenAuth(area), SessionAuth()]


def holds(user: AbstractBaseUser, *perms: str) -> bool:
    """The rule of `require_perm` as a question: active staff holding any of `perms` ("app.codename")."""
    return bool(user.is_active and user.is_staff and any(user.has_perm(perm) for perm in perms))


def require_perm(request: HttpRequest, *perms: str) -> AbstractBaseUser:
    """The authenticated user, if staff and holding any of `perms` ("app.codename"); else 403."""
    user = request.auth  # set by ninja from the auth classes above
    if not (user.is_active and user.is_staff):
        raise HttpError(403, "Staff only.")
    if not holds(user, *perms):
        raise HttpError(403, f"Missing permission: {' or '.join(perms)}.")
    return user
