"""Error tracking through Sentry, on only when `SENTRY_DSN` is set (docs/operations.md#logs-and-error-tracking).

Called from the settings, so the web processes, `qcluster` and every command report alike. The queue's
errors arrive through the logging integration: django-q2 logs every failed task, with its traceback,
at ERROR on its `django-q` logger (and its scheduler's and broker's failures the same way). Its own
`error_reporter` hook loads reporters from installed packages' entry points (the django-q-sentry
plugin, which calls `sentry_sdk.init` a second time with its own options), so it is not used.

Nothing that works as a credential may reach an event: no personal data, no request bodies (a
webhook body carries the attempt's token and the signed photo link), no local variables, no query
strings (`?attempt=` on the webhook, `?sig=` on a signed link), no webhook signature header.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

FILTERED = "[Filtered]"
EXTRA_DENYLIST = ["webhook-signature", "webhook_signature", "sig", "signature"]


def init_sentry(dsn: str, *, environment: str = "", traces_sample_rate: float = 0.0, transport: Any = None) -> bool:
    """Start the Sentry client when a DSN is given; returns whether it did. `transport` is for tests."""
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *EXTRA_DENYLIST]),
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        integrations=[DjangoIntegration(), LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        transport=transport,
    )
    return True


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Drop the request's query string: the webhook's and the signed link's carry credentials."""
    request = event.get("request")
    if isinstance(request, dict) and request.get("query_string"):
        request["query_string"] = FILTERED
    return event


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Outgoing requests' query strings too (a client's `image_url` may be a presigned link)."""
    data = crumb.get("data")
    if isinstance(data, dict):
        for key in ("http.query", "http.fragment"):
            if data.get(key):
                data[key] = FILTERED
    return crumb
