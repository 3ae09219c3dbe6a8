"""Schedules are created idempotently and tasks delegate to the services."""

from __future__ import annotations

import pytest
from django_q.models import Schedule

from staging import tasks

from .conftest import attempts


@pytest.mark.django_db
def test_ensure_schedules_is_idempotent():
    tasks.ensure_schedules()
    tasks.Schedule.objects.filter(name__startswith="staging:").update(minutes=30)
    schedules = tasks.ensure_schedules()
    assert Schedule.objects.filter(name__startswith="staging:").count() == len(tasks.SCHEDULES) == 3
    assert {s.func for s in schedules} == {
        "staging.tasks.poll_in_flight",
        "staging.tasks.enforce_deadlines",
        "staging.tasks.retry_due",
    }
    assert all(s.minutes == 1 and s.schedule_type == Schedule.MINUTES for s in Schedule.objects.all())


@pytest.mark.django_db(transaction=True)
def test_tasks_drive_a_job_to_success(make_job):
    job = make_job("flux-kontext-max")
    for _ in range(100):
        tasks.poll_in_flight()
        tasks.retry_due()
        tasks.enforce_deadlines()
        if job.status == "succeeded":
            break
        __import__("time").sleep(0.05)
    assert job.status == "succeeded"
    assert attempts(job)[0].images.count() == 1
