"""django-q2 task functions: thin wrappers that take ids and call services.

Tasks are at-least-once (docs/architecture.md#idempotent-tasks): every service called here is idempotent, so a task
delivered twice, or run concurrently with itself, does no harm.
"""

from __future__ import annotations

from django.conf import settings

from . import collect, gateway, reconcile, retention, services, spend, sweeps


def submit_attempt(attempt_id: int) -> None:
    services.submit_attempt(attempt_id)


def collect_outputs(attempt_id: int) -> None:
    collect.collect_outputs(attempt_id)


def reconcile_attempt(attempt_id: int) -> None:
    """Queued after a create whose answer was lost: look for its prediction now (not yet final)."""
    reconcile.reconcile_attempt(attempt_id, final=False)


def poll_attempt(attempt_id: int) -> None:
    """Queued for a due read of one in-flight prediction (polling mode); re-queues itself while it runs."""
    sweeps.poll_attempt(attempt_id)


def poll_in_flight() -> dict[str, int]:
    if settings.STAGING_PUBLIC_URL:  # webhooks report progress: only late ones need a look, once
        return sweeps.poll_in_flight()
    return sweeps.poll_while_in_flight(
        window=settings.STAGING_POLL_WINDOW_SECONDS, interval=settings.STAGING_POLL_INTERVAL_SECONDS
    )


def enforce_deadlines() -> int:
    return sweeps.enforce_deadlines()


def retry_due() -> int:
    return sweeps.retry_due()


def purge() -> str:
    return str(retention.purge())


def resume_held() -> int:
    return spend.resume_held()


def refresh_webhook_secret() -> str:
    return gateway.refresh_webhook_secret()
