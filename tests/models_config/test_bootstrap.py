"""`manage.py bootstrap`: a first superuser, never a fixed password; config rows and schedules are `migrate`'s."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands, load_command_class
from django_q.models import Schedule

from models_config.models import ModelConfig
from models_config.registry import REGISTRY
from tests.fixtures.config_rows import forget_config_rows

pytestmark = pytest.mark.django_db


def _bootstrap() -> str:
    out = StringIO()
    call_command("bootstrap", stdout=out)
    return out.getvalue()


def test_generates_a_password_once_next_to_the_config_rows_of_migrate(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    first = _bootstrap()
    assert set(ModelConfig.objects.values_list("slug", flat=True)) == set(REGISTRY)  # created by `migrate`
    password = first.split("password: ", 1)[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    second = _bootstrap()
    assert "password" not in second  # shown only once
    assert ModelConfig.objects.count() == len(REGISTRY)


def test_two_fresh_installs_get_different_passwords(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    first = _bootstrap().split("password: ", 1)[1].split()[0]
    get_user_model().objects.all().delete()
    second = _bootstrap().split("password: ", 1)[1].split()[0]
    assert first != second and len(first) >= 12


def test_superuser_from_the_environment(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "correct horse battery staple")
    output = _bootstrap()
    assert "correct horse" not in output
    user = get_user_model().objects.get(username="ops")
    assert user.is_superuser and user.check_password("correct horse battery staple")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a new passphrase here")
    _bootstrap()
    user.refresh_from_db()
    assert user.check_password("a new passphrase here")


def test_stores_no_config_rows_or_schedules_and_says_migrate_does(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    forget_config_rows()
    Schedule.objects.all().delete()
    output = _bootstrap()
    assert not ModelConfig.objects.exists() and not Schedule.objects.exists()
    assert "come from `python manage.py migrate`" in output
    assert "come from `python manage.py migrate`" in _bootstrap()  # also when there is nothing to do


def test_help_says_what_it_does_and_what_migrate_does():
    command = load_command_class(get_commands()["bootstrap"], "bootstrap")
    text = " ".join(command.create_parser("manage.py", "bootstrap").format_help().split())
    assert "first superuser" in text and "queue schedules come from `python manage.py migrate`" in text
