"""Error tracking through Sentry, on only when `SENTRY_DSN` is set (docs/operations.md#logs-and-error-tracking).

Called from the settings, so the web processes, `qcluster` and every command report alike. The queue's
errors arrive through the logging integration: django-q2 logs every failed task, with its traceback,
at ERROR on its `django-q` logger (and its scheduler's and broker's failures the same way). Its own
`error_reporter` hook loads reporters from installed packages' entry points (the django-q-sentry
plugin, which calls `sentry_sdk.init` a second time with its own options), so it is not used.

Nothing that works as a credential may reach an event. `data_collection` is sentry-sdk's successor of
`send_default_pii` (which it deprecates; left unset it counts as False): no user, cookies, request
bodies (a webhook body carries the attempt's token and the signed photo link), frame variables or
queue payloads; headers and query parameters with the SDK's sensitive names plus ours (the webhook's
signature header, `?attempt=` on the webhook, `?sig=` on a signed link) are filtered.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

FILTERED = "[Filtered]"
DATA_COLLECTION: dict[str, Any] = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "denylist", "terms": ["signature", "forwarded", "-ip", "remote-", "via"]}},
    "http_bodies": [],
    "url_query_params": {"mode": "denylist", "terms": ["attempt", "sig"]},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}


def init_sentry(dsn: str, *, environment: str = "", traces_sample_rate: float = 0.0, transport: Any = None) -> bool:
    """Start the Sentry client when a DSN is given; returns whether it did. `transport` is for tests."""
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        traces_sample_rate=traces_sample_rate,
        data_collection=DATA_COLLECTION,
        before_breadcrumb=scrub_breadcrumb,
        integrations=[DjangoIntegration(), LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        transport=transport,
    )
    return True


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Outgoing requests' query strings (a client's `image_url` may be a presigned link with its signature)."""
    data = crumb.get("data")
    if isinstance(data, dict):
        for key in ("http.query", "http.fragment"):
            if data.get(key):
                data[key] = FILTERED
    return crumb
