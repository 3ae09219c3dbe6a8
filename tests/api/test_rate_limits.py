"""Rate limits: STAGING_API_RATE per token (a session: per user) and STAGING_AUTH_FAILURE_RATE per address for
unknown tokens and failed admin logins; 429 with Retry-After; counted in a cache every process shares.

The clock is moved with time-machine (the window resets), never slept on. Most tests count in this
process's memory (tests/settings.py); the shared backends have tests of their own below: the database
cache seen from a child process, and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connection
from django.test import Client, override_settings

from api import services
from tests.fixtures.users import JOB_PERMS, logged_in, make_staff

JOBS = "/api/v1/jobs"
LOGIN = "/admin/login/"
START = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def bearer(raw: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}", **extra}


@pytest.fixture
def reader(db):
    return make_staff("reader", *JOB_PERMS)


@pytest.fixture
def raw_token(reader) -> str:
    return services.create_api_token(reader, "ci")[1]


def assert_throttled(response, wait: int) -> None:
    assert response.status_code == 429, response.content
    assert response["Retry-After"] == str(wait)
    assert response.json() == {"detail": f"Too many requests. Retry in {wait} s."}


# --- per token ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_nth_plus_one_request_is_429_until_the_window_moves_on(settings, reader, raw_token) -> None:
    settings.STAGING_API_RATE = "3/m"
    client = Client(headers=bearer(raw_token))
    other = Client(headers=bearer(services.create_api_token(reader, "other")[1]))
    with time_machine.travel(START, tick=False) as clock:
        assert [client.get(JOBS).status_code for _ in range(3)] == [200, 200, 200]
        clock.shift(timedelta(seconds=20))
        assert_throttled(client.get(JOBS), 40)  # the oldest of the three leaves the window in 40 s
        assert client.post(f"{JOBS}/1/cancel").status_code == 429  # every operation counts, writes too
        assert other.get(JOBS).status_code == 200  # per token, not per user
        clock.shift(timedelta(seconds=40))
        assert client.get(JOBS).status_code == 200


@pytest.mark.django_db
def test_a_session_counts_per_user(settings, reader) -> None:
    settings.STAGING_API_RATE = "2/m"
    with time_machine.travel(START, tick=False):
        assert [logged_in(reader).get(JOBS).status_code for _ in range(2)] == [200, 200]
        assert_throttled(logged_in(reader).get(JOBS), 60)  # a new session of the same user shares the count
        assert logged_in(make_staff("someone", *JOB_PERMS)).get(JOBS).status_code == 200


@pytest.mark.django_db
def test_off_means_no_limit(settings, raw_token) -> None:
    settings.STAGING_API_RATE = "off"
    client = Client(headers=bearer(raw_token))
    assert {client.get(JOBS).status_code for _ in range(5)} == {200}


# --- failed authentication per address ------------------------------------------------------------


@pytest.mark.django_db
def test_unknown_tokens_are_throttled_per_address(settings, raw_token) -> None:
    settings.STAGING_AUTH_FAILURE_RATE = "3/m"
    guesser = Client(REMOTE_ADDR="203.0.113.7")
    with time_machine.travel(START, tick=False) as clock:
        for _ in range(3):
            assert guesser.get(JOBS, headers=bearer("stg_guess")).status_code == 401
        assert_throttled(guesser.get(JOBS, headers=bearer("stg_guess")), 60)
        # From that address even a good token waits: a guess that hit would otherwise be told apart.
        assert guesser.get(JOBS, headers=bearer(raw_token)).status_code == 429
        # The client cannot choose its address: X-Forwarded-For is ignored without proxies (STAGING_NUM_PROXIES).
        spoofed = guesser.get(JOBS, headers=bearer(raw_token, **{"X-Forwarded-For": "198.51.100.1"}))
        assert spoofed.status_code == 429
        assert Client(REMOTE_ADDR="203.0.113.8").get(JOBS, headers=bearer(raw_token)).status_code == 200
        clock.shift(timedelta(seconds=61))
        assert guesser.get(JOBS, headers=bearer(raw_token)).status_code == 200


@pytest.mark.django_db
def test_good_tokens_and_sessions_use_no_failure_budget(settings, reader, raw_token) -> None:
    settings.STAGING_AUTH_FAILURE_RATE = "1/m"
    client = Client(headers=bearer(raw_token))
    assert {client.get(JOBS).status_code for _ in range(3)} == {200}
    assert {logged_in(reader).get(JOBS).status_code for _ in range(3)} == {200}


@pytest.mark.django_db
def test_failed_admin_logins_are_throttled_per_address(settings, reader) -> None:
    settings.STAGING_AUTH_FAILURE_RATE = "2/m"
    browser = Client(REMOTE_ADDR="203.0.113.9")
    wrong = {"username": "reader", "password": "wrong"}
    right = {"username": "reader", "password": "pw-reader"}
    with time_machine.travel(START, tick=False) as clock:
        for _ in range(2):
            page = browser.post(LOGIN, wrong)
            assert page.status_code == 200 and "correct username and password" in page.content.decode()
        refused = browser.post(LOGIN, right)  # the password is not even checked now
        assert refused.status_code == 429 and refused["Retry-After"] == "60"
        assert "Too many failed logins" in refused.content.decode()
        assert browser.get(LOGIN).status_code == 200  # the form itself still shows
        assert Client(REMOTE_ADDR="203.0.113.10").post(LOGIN, right).status_code == 302
        clock.shift(timedelta(seconds=60))
        assert browser.post(LOGIN, right).status_code == 302


# --- the shared backends --------------------------------------------------------------------------


@pytest.mark.django_db
def test_migrate_creates_the_database_cache_table() -> None:
    """`make run` and a fresh deploy need no `createcachetable`: the post_migrate receiver makes it."""
    from django.core.management.sql import emit_post_migrate_signal

    table = django_settings.DATABASE_CACHE["LOCATION"]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}")
    assert table not in connection.introspection.table_names()
    with override_settings(CACHES={"default": django_settings.DATABASE_CACHE}):
        emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert table in connection.introspection.table_names()


@pytest.mark.django_db(transaction=True)
def test_the_database_cache_counts_for_every_process(settings, raw_token, subprocess_env) -> None:
    """A child process (its own settings: the database cache by default) spends the token's budget; this
    process, on the same cache, then finds it spent."""
    settings.STAGING_API_RATE = "2/m"
    database_cache = caches["database"]
    database_cache.clear()
    child = (
        "import django, json; django.setup(); from django.test import Client; "
        f"c = Client(headers={{'Authorization': 'Bearer {raw_token}'}}); "
        f"print(json.dumps([c.get('{JOBS}').status_code for _ in range(2)]))"
    )
    env = {**subprocess_env, "STAGING_API_RATE": "2/m"}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", child], env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [200, 200]
    with override_settings(CACHES={"default": django_settings.DATABASE_CACHE}):
        assert Client(headers=bearer(raw_token)).get(JOBS).status_code == 429
    database_cache.clear()


REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_cache(prefix: str) -> dict:
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": prefix}


@pytest.mark.django_db
def test_redis_counts_for_every_connection(settings, raw_token) -> None:
    """With REDIS_URL the counts live in Redis: a second, independent connection sees them."""
    settings.STAGING_API_RATE = "2/m"
    prefix = f"test-{uuid.uuid4().hex}"  # this run's keys only, whoever else uses the server
    with override_settings(CACHES={"default": redis_cache(prefix)}):
        client = Client(headers=bearer(raw_token))
        assert [client.get(JOBS).status_code for _ in range(2)] == [200, 200]
        assert client.get(JOBS).status_code == 429
        other = caches.create_connection("default")  # a new client, as another process would have
        keys = other._cache.get_client().keys(f"{prefix}:*")
        assert len(keys) == 1 and b"throttle_api_token" in keys[0]
        other.delete(keys[0].decode().split(":", 2)[2])  # the key as the cache names it, without prefix/version
        assert client.get(JOBS).status_code == 200


def test_redis_url_selects_the_redis_cache_else_the_database() -> None:
    code = "import json; from django.conf import settings; print(json.dumps(settings.CACHES['default']))"

    def default_cache(**env: str) -> dict:
        child_env = {k: v for k, v in subprocess_env_base().items() if k != "REDIS_URL"} | env
        result = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert default_cache()["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert default_cache(REDIS_URL=REDIS_URL) == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }


def subprocess_env_base() -> dict[str, str]:
    import os

    return {**os.environ, "DJANGO_SETTINGS_MODULE": "stagingsite.settings", "PYTHONPATH": str(django_settings.BASE_DIR)}


@pytest.mark.parametrize("rate", ["fast", "10/week"])
def test_a_bad_rate_stops_the_process_with_one_line(rate) -> None:
    code = "from django.conf import settings; settings.CACHES"
    env = {**subprocess_env_base(), "STAGING_API_RATE": rate}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and f"STAGING_API_RATE: '{rate}' is not a rate" in result.stderr


def test_a_throttle_keeps_each_threads_request_apart(settings) -> None:
    """One process serves requests on several threads with the same throttle object: what one request read
    (its history, its clock) must not become another's between `allow_request` and `wait`."""
    import threading

    from django.core.cache import cache
    from django.test import RequestFactory

    from api.throttling import AuthFailureThrottle

    settings.STAGING_AUTH_FAILURE_RATE = "1/m"
    throttle = AuthFailureThrottle()
    blocked = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1")
    free = RequestFactory().get("/", REMOTE_ADDR="192.0.2.2")
    cache.clear()
    with time_machine.travel(START, tick=False) as clock:
        throttle.record_failure(blocked)
        clock.shift(timedelta(seconds=15))
        read, other_done, answers = threading.Event(), threading.Event(), {}

        def first() -> None:
            answers["allowed"] = AuthFailureThrottle.allow_request(throttle, blocked)
            read.set()
            other_done.wait(5)
            answers["wait"] = throttle.wait()

        def second() -> None:
            read.wait(5)
            answers["other"] = AuthFailureThrottle.allow_request(throttle, free)  # empty history, another key
            other_done.set()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert answers == {"allowed": False, "other": True, "wait": 45}
