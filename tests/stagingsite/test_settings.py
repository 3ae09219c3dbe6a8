"""Production settings come from the environment, are the default, and pass Django's deployment checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

PRODUCTION = {
    "DJANGO_SECRET_KEY": "k" * 20 + "-production-only-" + "x" * 30,
    "DJANGO_ALLOWED_HOSTS": "staging.example.com",
}
POSTGRES = "postgres://staging@db.invalid:5432/staging"  # never connected to: only the settings are read
OWN_VARIABLES = ("DJANGO_", "DATABASE_", "STATIC_ROOT", "WEB_")


def _clean_env(**env: str) -> dict[str, str]:
    """The test run's environment without any of the variables these tests are about (tests set DJANGO_DEBUG)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    child_env.update(env)
    return child_env


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(*names: str, **env: str) -> dict:
    """The named settings as the service would load them from `env` alone (in a fresh process)."""
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=_clean_env(DJANGO_SETTINGS_MODULE="stagingsite.settings", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_settings_pass_check_deploy():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_DEBUG="false", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_with_nothing_set_debug_is_off_and_the_deploy_checks_pass():
    assert _settings("DEBUG", **PRODUCTION) == {"DEBUG": False}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_a_secret_key_manage_py_stops_with_one_line_and_no_traceback():
    result = _manage("migrate")  # nothing set: production mode
    assert result.returncode == 1
    assert result.stderr.startswith("error: DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    assert "DJANGO_DEBUG=true" in result.stderr  # how to get development mode instead
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_without_a_secret_key_gunicorn_stops_with_one_line_and_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "stagingsite/gunicorn.conf.py", "--bind", "127.0.0.1:0"],
        cwd=settings.BASE_DIR,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "error: DJANGO_SECRET_KEY must be set" in output
    assert "Traceback" not in output and "Booting worker" not in output


@pytest.mark.parametrize("variable", ["WEB_CONCURRENCY", "WEB_THREADS"])
def test_a_bad_app_server_size_is_one_line(variable):
    result = _manage("serve", "--port", "0", DJANGO_DEBUG="true", **{variable: "0"})
    assert result.returncode == 1
    assert f"{variable} must be a whole number of at least 1, not '0'" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_check_deploy_flags_the_dev_defaults():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_DEBUG="true")
    assert result.returncode != 0  # a dev setup must never look deployable


@pytest.mark.parametrize("debug", ["true", "false"])
def test_the_proxy_header_is_trusted_only_when_a_setting_says_a_proxy_sets_it(debug):
    assert _settings("SECURE_PROXY_SSL_HEADER", DJANGO_DEBUG=debug, **PRODUCTION) == {"SECURE_PROXY_SSL_HEADER": None}
    trusted = _settings(
        "SECURE_PROXY_SSL_HEADER", DJANGO_DEBUG=debug, DJANGO_SECURE_PROXY_SSL_HEADER="true", **PRODUCTION
    )
    assert trusted == {"SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]}


def test_postgresql_gets_a_bounded_pool_and_no_persistent_connections():
    loaded = _settings("DATABASES", DATABASE_URL=POSTGRES, **PRODUCTION)["DATABASES"]["default"]
    assert loaded["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 4, "timeout": 10.0}
    assert loaded["CONN_MAX_AGE"] == 0
    sized = _settings("DATABASES", DATABASE_URL=POSTGRES, DATABASE_POOL_MIN="2", DATABASE_POOL_MAX="8", **PRODUCTION)[
        "DATABASES"
    ]["default"]
    assert sized["OPTIONS"]["pool"]["min_size"] == 2 and sized["OPTIONS"]["pool"]["max_size"] == 8


def test_sqlite_has_no_pool():
    loaded = _settings("DATABASES", DATABASE_URL="sqlite:////tmp/x.sqlite3", **PRODUCTION)["DATABASES"]["default"]
    assert "pool" not in loaded["OPTIONS"]


@pytest.mark.parametrize(("low", "high"), [("5", "2"), ("0", "0"), ("-1", "4")])
def test_an_impossible_pool_size_is_one_line(low, high):
    result = _manage("check", DATABASE_URL=POSTGRES, DATABASE_POOL_MIN=low, DATABASE_POOL_MAX=high, **PRODUCTION)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: DATABASE_POOL_MIN ({low}) and DATABASE_POOL_MAX ({high}) must satisfy")
    assert "Traceback" not in result.stderr


def test_the_queue_cluster_turns_the_pool_off_for_its_forked_processes():
    code = (
        "import django; django.setup(); from django.db import connections; "
        "from stagingsite.database import use_plain_connections; use_plain_connections(); "
        "d = connections['default'].settings_dict; print(d['OPTIONS'].get('pool'), d['CONN_MAX_AGE'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=_clean_env(DJANGO_SETTINGS_MODULE="stagingsite.settings", DATABASE_URL=POSTGRES, **PRODUCTION),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "60"]


def test_static_files_are_served_by_whitenoise_from_a_configurable_root(tmp_path):
    loaded = _settings("MIDDLEWARE", "STORAGES", "STATIC_ROOT", STATIC_ROOT=str(tmp_path), **PRODUCTION)
    assert loaded["MIDDLEWARE"][:2] == [
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
    ]
    assert loaded["STORAGES"]["staticfiles"]["BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert loaded["STATIC_ROOT"] == str(tmp_path)
