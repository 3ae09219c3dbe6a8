"""Spend caps on the real pipeline: past a cap attempts wait as held, unsent, and start by themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from models_config.services import set_daily_spend_limit
from staging import tasks
from staging.models import Attempt, SpendDay, StagingJob
from tests.fixtures.pipeline import attempts, drive, job_status

pytestmark = pytest.mark.django_db(transaction=True)

FLUX = "flux-kontext-pro"  # one image at $0.04 per attempt


def _counters(slug: str = FLUX) -> tuple[Decimal, Decimal]:
    row = SpendDay.objects.filter(model_slug=slug).order_by("-day").first()
    return (row.reserved, row.spent) if row else (Decimal(0), Decimal(0))


def _held_job(make_job, pipeline, limit: str = "0.04"):
    """One job succeeded and spent the model's whole cap; the second one is held."""
    set_daily_spend_limit(FLUX, Decimal(limit), actor=None, comment="test cap")
    first = make_job(FLUX)
    assert drive(first) == "succeeded"
    second = make_job(FLUX)
    return first, second


def test_cap_reached_holds_new_attempts_without_sending(make_job, pipeline):
    first, second = _held_job(make_job, pipeline)
    [attempt] = attempts(second)
    assert attempt.state == Attempt.State.HELD
    assert "daily spend limit of flux-kontext-pro ($0.04 per UTC day) is reached" in attempt.held_reason
    assert attempt.held_at is not None and attempt.prediction_id is None and attempt.input is None
    assert attempt.deadline is None  # a held attempt is never failed by the deadline sweep
    assert job_status(second) == "held"
    assert StagingJob.objects.with_status().get(pk=second.pk).derived_status == "held"
    assert pipeline.counters()["creates_total"] == 1
    assert _counters() == (Decimal(0), Decimal("0.04"))  # the actual cost replaced the reservation
    assert attempts(first)[0].cost == Decimal("0.04")
    tasks.enforce_deadlines()
    tasks.resume_held()  # still no budget today: stays held
    assert attempts(second)[0].state == Attempt.State.HELD
    assert pipeline.counters()["creates_total"] == 1


def test_overall_cap_holds_every_model(make_job, pipeline, settings):
    settings.STAGING_DAILY_SPEND_LIMIT = Decimal("0.05")
    assert drive(make_job(FLUX)) == "succeeded"
    other = make_job("qwen-image-edit")  # $0.03: 0.04 + 0.03 > 0.05
    [attempt] = attempts(other)
    assert attempt.state == Attempt.State.HELD
    assert "the overall daily spend limit ($0.05 per UTC day)" in attempt.held_reason
    assert pipeline.counters()["creates_total"] == 1


def test_raising_the_limit_resumes_held_attempts_at_once(make_job, pipeline):
    _, second = _held_job(make_job, pipeline)
    third = make_job(FLUX)
    assert job_status(third) == "held"
    set_daily_spend_limit(FLUX, Decimal("0.08"), actor=None, comment="one more")  # room for one of the two
    assert drive(second) == "succeeded"
    assert job_status(third) == "held"
    assert pipeline.counters()["creates_total"] == 2
    set_daily_spend_limit(FLUX, None, actor=None, comment="no cap")
    assert drive(third) == "succeeded"
    assert pipeline.counters()["creates_total"] == 3
    assert _counters() == (Decimal(0), Decimal("0.12"))


def test_next_utc_day_the_schedule_releases_held_attempts(make_job, pipeline):
    _, second = _held_job(make_job, pipeline)
    tomorrow = datetime.now(UTC).replace(hour=0, minute=1, second=0, microsecond=0) + timedelta(days=1)
    with time_machine.travel(tomorrow, tick=True):
        assert tasks.resume_held() == 1
        assert drive(second) == "succeeded"
        today = SpendDay.objects.get(day=tomorrow.date(), model_slug=FLUX)
        assert (today.reserved, today.spent) == (Decimal(0), Decimal("0.04"))
    assert pipeline.counters()["creates_total"] == 2


def test_refused_create_releases_its_reservation(make_job, pipeline):
    set_daily_spend_limit(FLUX, Decimal("0.04"), actor=None, comment="one slot")
    pipeline.set_faults(create_429=1)
    job = make_job(FLUX)
    [attempt] = attempts(job)
    assert attempt.state == Attempt.State.QUEUED and attempt.reserved_on is None
    assert _counters() == (Decimal(0), Decimal(0))  # the slot is free again while it waits
    assert drive(job) == "succeeded"
    assert _counters() == (Decimal(0), Decimal("0.04"))


def test_failure_before_a_prediction_ran_releases_its_reservation(make_job, pipeline, monkeypatch):
    from staging import storage

    def broken(*args, **kwargs):
        from staging.errors import ReplicateNotConfigured

        raise ReplicateNotConfigured()

    set_daily_spend_limit(FLUX, Decimal("0.04"), actor=None, comment="one slot")
    monkeypatch.setattr(storage, "image_url_for_replicate", broken)
    job = make_job(FLUX)
    assert job_status(job) == "failed"
    assert _counters() == (Decimal(0), Decimal(0))
    assert pipeline.counters()["creates_total"] == 0


def test_a_failed_prediction_costs_nothing_and_frees_the_slot(make_job, pipeline, settings):
    settings.STAGING_MAX_ATTEMPTS = 1
    set_daily_spend_limit(FLUX, Decimal("0.04"), actor=None, comment="one slot")
    pipeline.set_faults(moderate=1)
    job = make_job(FLUX)
    assert drive(job) == "failed"
    assert _counters() == (Decimal(0), Decimal(0))
    assert drive(make_job(FLUX)) == "succeeded"  # the slot was not used up by the failure
