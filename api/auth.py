"""Authentication and permissions for every router of the HTTP API.

Two ways in: a personal token (`Authorization: Bearer stg_…`, looked up by its SHA-256 hash, no CSRF
since a browser never sends it by itself) or the admin's session cookie (CSRF enforced on unsafe
methods, as for any cookie). Authentication only says *who*; `require_perm` then says *may they*:
anonymous → 401, authenticated but not staff or lacking the permission → 403.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from .models import ApiToken


class BearerTokenAuth(HttpBearer):
    """A personal API token (created in the admin). Records when it was last used."""

    def __call__(self, request: HttpRequest) -> AbstractBaseUser | None:
        # ninja's HttpBearer logs the whole header for other schemes in DEBUG: a credential in a log.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.authenticate(request, token.strip()) if scheme.lower() == "bearer" else None

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        if not token:
            return None
        row = ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash(token)).first()
        if row is None or not row.user.is_active:
            return None  # never echo the token: the answer is a plain 401
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
        request.user = row.user  # so code below sees one user, whichever way they came in
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
        if not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header.")
        return request.COOKIES.get(self.param_name) or "session"

    def authenticate(self, request: HttpRequest, key: str | None) -> AbstractBaseUser | None:
        return request.user if key is not None else None


def api_auth() -> list[Any]:
    """The auth list of the API root (and of any router mounted elsewhere): token first, then the session."""
    return [BearerTokenAuth(), SessionAuth()]


def require_perm(request: HttpRequest, *perms: str) -> AbstractBaseUser:
    """The authenticated user, if staff and holding any of `perms` ("app.codename"); else 403."""
    user = request.auth  # set by ninja from the auth classes above
    if not (user.is_active and user.is_staff):
        raise HttpError(403, "Staff only.")
    if not any(user.has_perm(perm) for perm in perms):
        raise HttpError(403, f"Missing permission: {' or '.join(perms)}.")
    return user
