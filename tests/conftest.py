"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import tempfile

import pytest
from django.conf import settings
from django.db import connection

from models_config import selectors

pytest_plugins = [  # a plugin that another one imports comes first, so that pytest can rewrite its asserts
    "tests.fixtures.photos",
    "tests.fixtures.emulator",
    "tests.fixtures.pipeline",
    "tests.fixtures.users",
    "tests.fixtures.browser",
]


def pytest_configure(config: pytest.Config) -> None:
    """Keep uploaded and staged files of a test run out of the project's own media folder."""
    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="staging-test-media-")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """A test database of its own per run, so two runs on one machine never share one."""
    from pytest_django.fixtures import _set_suffix_to_test_databases

    _set_suffix_to_test_databases(suffix=f"p{os.getpid()}")


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Each test starts with empty per-process caches, as a new worker would.

    The webhook secret is cached per (API URL, token); emulators of earlier tests may have had the
    same URL (a reused port) with another secret. Rate-limit counts are keyed by token and user ids,
    which the next test's rows reuse.
    """
    from django.core.cache import cache

    from staging import gateway

    selectors.invalidate()
    gateway.secret_cache.clear()
    cache.clear()  # the rate limits' counts (tests/settings.py: this process's memory)
    yield
    selectors.invalidate()
    gateway.secret_cache.clear()


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for a child process (manage.py, qcluster) that must use this test's database."""
    env = os.environ.copy()
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        user = db.get("USER") or "postgres"
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        env["DATABASE_URL"] = f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["DJANGO_SETTINGS_MODULE"] = "stagingsite.settings"
    return env
