"""The fetched webhook secret lives in the shared cache: a refresh in one process (the daily task in a queue
worker) is used by every other process (the web processes verifying webhooks) within seconds."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.cache import caches
from django.test import override_settings

from replicate_emulator.webhooks import new_secret
from staging import gateway

CHILD = "import django; django.setup(); from staging import tasks; print(tasks.refresh_webhook_secret())"


@pytest.mark.django_db(transaction=True)
def test_a_refresh_in_another_process_reaches_this_one_within_seconds(settings, pipeline, subprocess_env) -> None:
    settings.REPLICATE_WEBHOOK_SECRET = ""
    first = pipeline.webhook_secret
    start = datetime.now(UTC)
    database_cache = caches["database"]
    database_cache.clear()
    with override_settings(CACHES={"default": django_settings.DATABASE_CACHE}):
        with time_machine.travel(start, tick=False):
            assert gateway.webhook_secret() == first  # fetched once, kept in this process and the shared cache

        pipeline.webhook_secret = second = new_secret()  # rotated at Replicate
        env = {
            **subprocess_env,
            "REPLICATE_BASE_URL": settings.REPLICATE_BASE_URL,
            "REPLICATE_API_TOKEN": settings.REPLICATE_API_TOKEN,
            "REPLICATE_WEBHOOK_SECRET": "",
        }
        env.pop("REDIS_URL", None)  # the default shared cache: the database's
        child = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip().splitlines()[-1] == "Webhook secret fetched (it changed)."
        assert second not in child.stdout + child.stderr  # the secret is never printed or logged

        pipeline.webhook_secret = new_secret()  # rotated again: what follows must come from the cache, not the API
        with time_machine.travel(start + timedelta(seconds=1), tick=False):
            assert gateway.webhook_secret() == first  # this process's copy, trusted for a few seconds
        later = start + timedelta(seconds=gateway.SECRET_SHARED_READ_SECONDS + 1)
        with time_machine.travel(later, tick=False):
            assert gateway.webhook_secret() == second  # the child's refresh, read from the shared cache
    database_cache.clear()


@pytest.mark.django_db(transaction=True)
def test_a_failed_signature_takes_the_secret_another_process_stored_without_fetching(settings, pipeline) -> None:
    """The shared copy is newer than this process's: a refresh adopts it instead of asking Replicate."""
    settings.REPLICATE_WEBHOOK_SECRET = ""
    first = pipeline.webhook_secret
    assert gateway.webhook_secret() == first
    key = (settings.REPLICATE_BASE_URL, settings.REPLICATE_API_TOKEN)
    stored_elsewhere = new_secret()
    caches["default"].set(
        gateway._shared_secret_key(key), {"key": stored_elsewhere, "fetched_at": datetime.now(UTC).timestamp()}
    )
    assert gateway.webhook_secret() == first  # within the few seconds this process trusts its copy
    assert gateway.webhook_secret(refresh=True) == stored_elsewhere  # the emulator still says `first`


def test_the_cache_key_does_not_carry_the_api_token(settings) -> None:
    key = gateway._shared_secret_key(("https://api.replicate.com", "r8_secret_token"))
    assert "r8_secret_token" not in key and key.startswith("staging:webhook-secret:")
