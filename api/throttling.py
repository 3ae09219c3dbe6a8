"""Rate limits: the API's per token (`STAGING_API_RATE`), and failed authentication per client address
(`STAGING_AUTH_FAILURE_RATE`: unknown bearer tokens, failed admin logins). docs/architecture.md#rate-limits

The limiter is django-ninja's own (`ninja.throttling.SimpleRateThrottle`: a sliding window of request
times kept in Django's cache), so its counts live wherever `CACHES["default"]` does: the database cache
by default, Redis when `REDIS_URL` is set, either way shared by every process and host. Two things are
added here: the rate is read from the settings on each request (so it is one setting, changeable in
tests), and the per-request state ninja keeps on the throttle object is kept per thread, because one
app-server process serves requests on several threads with the same throttle objects.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja.errors import Throttled
from ninja.throttling import SimpleRateThrottle

from staging.rates import rate_window


def _per_thread(name: str) -> property:
    def get(self: SettingsRateThrottle) -> Any:
        return getattr(self._local, name)

    def set_(self: SettingsRateThrottle, value: Any) -> None:
        setattr(self._local, name, value)

    return property(get, set_)


class SettingsRateThrottle(SimpleRateThrottle):
    """ninja's sliding-window throttle with its rate from the setting named `setting` (None there: no limit)."""

    setting: str = ""
    key = _per_thread("key")
    history = _per_thread("history")
    now = _per_thread("now")

    def __init__(self) -> None:  # ninja's reads a fixed rate here; ours reads the setting per request
        self._local = threading.local()
        self.rate = None

    def configure(self) -> bool:
        """Take the current setting; False when it says no limit."""
        window = rate_window(getattr(settings, self.setting))
        if window is None:
            return False
        self.num_requests, self.duration = max(1, int(window[0])), int(window[1])
        return True

    def allow_request(self, request: HttpRequest) -> bool:
        return not self.configure() or super().allow_request(request)


class ApiRateThrottle(SettingsRateThrottle):
    """STAGING_API_RATE per API token; a session (no token) counts per user."""

    scope = "api"
    setting = "STAGING_API_RATE"

    def get_cache_key(self, request: HttpRequest) -> str | None:
        token = getattr(request, "api_token", None)  # set by auth.BearerTokenAuth
        user = getattr(request, "auth", None)
        if token is not None:
            ident = f"token{token.pk}"
        elif user is not None:
            ident = f"user{user.pk}"
        else:
            return None  # unauthenticated requests never get this far (401)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AuthFailureThrottle(SettingsRateThrottle):
    """STAGING_AUTH_FAILURE_RATE failed authentications per client address; only failures are counted.

    The address is REMOTE_ADDR, or the one `STAGING_NUM_PROXIES` proxies in front put in
    X-Forwarded-For (ninja's `get_ident`, with `NINJA_NUM_PROXIES` from that setting): a client cannot
    pick its own address by sending that header.
    """

    scope = "auth_failures"
    setting = "STAGING_AUTH_FAILURE_RATE"

    def get_cache_key(self, request: HttpRequest) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def retry_after(self, request: HttpRequest) -> int | None:
        """Seconds until this address may try again, or None when it may now. Counts nothing."""
        if not self.configure() or super().allow_request(request):
            return None
        return math.ceil(self.wait() or self.duration)

    def throttle_success(self) -> bool:
        return True  # `retry_after` only looks; `record_failure` counts

    def record_failure(self, request: HttpRequest) -> None:
        if self.configure() and super().allow_request(request):
            SimpleRateThrottle.throttle_success(self)

    def check(self, request: HttpRequest) -> None:
        """Raise ninja's `Throttled` (answered 429 with Retry-After by `api.errors`) while this address is over."""
        wait = self.retry_after(request)
        if wait is not None:
            raise Throttled(wait)


auth_failures = AuthFailureThrottle()


def record_failed_login(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any) -> None:
    """`user_login_failed` receiver (connected in `apps.ApiConfig.ready`): a failed login counts for its address."""
    if request is not None:
        auth_failures.record_failure(request)


def throttle_failed_logins(login_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view (the admin's): a POST from an address over its failure budget is answered 429.

    The password is not even checked then, so guessing stays slow whatever the guesses are.
    """

    @wraps(login_view)
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = auth_failures.retry_after(request) if request.method == "POST" else None
        if wait is None:
            return login_view(request, *args, **kwargs)
        response = HttpResponse(
            f"Too many failed logins from your address: try again in {wait} s.\n",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(wait)
        return response

    return view
