"""`/healthz`, `/readyz` and the root page: cheap JSON probes, and a 503 that names what fails."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import OperationalError
from django.test import Client
from django.utils import timezone
from django_q.models import Schedule, Task
from django_q.status import Stat

from staging.schedules import SCHEDULES
from stagingsite import readiness


@pytest.fixture(autouse=True)
def _migrations_checked_afresh(monkeypatch):
    monkeypatch.setattr(readiness, "_migrations_applied", set())


def _scheduled_result(stopped, group: str = SCHEDULES[0].name) -> Task:
    """The result a cluster leaves when it has run one of our schedules' tasks."""
    return Task.objects.create(
        id=uuid.uuid4().hex,
        name="burger-july-papa-red",
        func=SCHEDULES[0].func,
        group=group,
        started=stopped - timedelta(seconds=1),
        stopped=stopped,
        success=True,
    )


def test_healthz_answers_without_touching_the_database():
    response = Client().get("/healthz")  # no `db` fixture: any query would fail the test
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_probes_take_only_safe_methods():
    assert Client().post("/healthz").status_code == 405
    assert Client().post("/readyz").status_code == 405


def test_readyz_is_ok_when_everything_is_there(db):
    _scheduled_result(timezone.now() - timedelta(seconds=30))
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "schedules": "ok", "queue": "ok"},
    }


def test_readyz_names_a_queue_cluster_not_seen_in_two_minutes(db):
    _scheduled_result(timezone.now() - timedelta(minutes=3))
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["queue"].startswith("no queue cluster seen in the last 2 minutes")
    assert "manage.py qcluster" in body["detail"]
    assert {name for name, result in body["checks"].items() if result != "ok"} == {"queue"}


def test_the_queue_window_follows_the_clock(db):
    finished = timezone.now()
    _scheduled_result(finished)
    assert readiness.queue_reason(now=finished + timedelta(minutes=1, seconds=59)) is None
    assert readiness.queue_reason(now=finished + timedelta(minutes=2, seconds=1)) is not None


def test_a_task_result_that_no_schedule_started_does_not_count_as_a_cluster(db):
    # `stage --wait` runs tasks inline and leaves results too, without any cluster running.
    _scheduled_result(timezone.now(), group="job 42")
    assert readiness.queue_reason() is not None


def test_a_cluster_status_in_a_shared_cache_counts(db, monkeypatch):
    monkeypatch.setattr(Stat, "get_all", staticmethod(lambda broker=None: [SimpleNamespace(timestamp=timezone.now())]))
    assert readiness.queue_reason() is None


def test_an_unreachable_cache_falls_back_to_the_database(db, monkeypatch):
    def broken(broker=None):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(Stat, "get_all", staticmethod(broken))
    _scheduled_result(timezone.now())
    assert readiness.queue_reason() is None


def test_readyz_names_the_missing_schedules(db):
    _scheduled_result(timezone.now())
    Schedule.objects.filter(name=SCHEDULES[1].name).delete()
    response = Client().get("/readyz")
    assert response.status_code == 503
    reason = response.json()["checks"]["schedules"]
    assert SCHEDULES[1].name in reason and SCHEDULES[0].name not in reason
    assert "manage.py migrate" in reason


def test_readyz_names_unapplied_migrations(db, monkeypatch):
    _scheduled_result(timezone.now())
    pending = [(Migration(f"00{n}_pending", "staging"), False) for n in range(50, 55)]
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets, clean_start=False: pending)
    response = Client().get("/readyz")
    assert response.status_code == 503
    reason = response.json()["checks"]["migrations"]
    assert reason.startswith("5 not applied (staging.0050_pending, staging.0051_pending, staging.0052_pending and 2")
    assert "manage.py migrate" in reason


def test_migrations_found_applied_are_not_read_again(db, monkeypatch):
    _scheduled_result(timezone.now())
    assert readiness.migrations_reason() is None
    monkeypatch.setattr(MigrationExecutor, "__init__", lambda *args, **kwargs: pytest.fail("read again"))
    assert Client().get("/readyz").status_code == 200


def test_readyz_with_the_database_down_says_so_without_its_error_message(db, monkeypatch):
    def refuse(self):
        raise OperationalError('connection failed: FATAL: password authentication failed for user "staging"')

    with monkeypatch.context() as patch:  # undone before the test database is torn down
        patch.setattr(BaseDatabaseWrapper, "cursor", refuse)
        response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "unreachable (OperationalError)"
    assert body["checks"]["queue"] == "not checked: the database is unreachable"
    assert "FATAL" not in response.content.decode() and "password" not in response.content.decode()


def test_a_check_that_breaks_is_named_instead_of_a_500(db, monkeypatch):
    def broken(using="default"):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(readiness, "schedules_reason", broken)
    response = Client(raise_request_exception=False).get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["schedules"] == "check failed (RuntimeError)"


def test_probes_are_exempt_from_the_https_redirect(settings):
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/admin/login/").status_code == 301


@pytest.mark.parametrize("debug", [True, False])
def test_the_root_leads_to_the_admin_and_the_api_docs(settings, debug):
    settings.DEBUG = debug
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/admin/"' in html and 'href="/api/v1/docs"' in html
