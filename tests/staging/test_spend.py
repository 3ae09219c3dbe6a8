"""The spend ledger: reservations at the claim are atomic, settled once, and `check_budget` tells callers early."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from models_config.models import ModelConfig
from staging import ledger, spend, transitions
from staging.models import Attempt, SpendDay, StagingJob

FLUX = "flux-kontext-pro"
SLOT = Decimal("0.04")


def _queued(n: int, slug: str = FLUX) -> list[Attempt]:
    out = []
    for _ in range(n):
        job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug=slug)
        out.append(Attempt.objects.create(job=job, number=1))
    return out


def _cap(slug: str, limit: str | None) -> None:
    ModelConfig.objects.update_or_create(slug=slug, defaults={"daily_spend_limit": limit})


def _row(slug: str = FLUX) -> SpendDay:
    return SpendDay.objects.get(day=ledger.day_of(), model_slug=slug)


def _budget(slug: str = FLUX, amount: Decimal = SLOT) -> transitions.Budget:
    return transitions.Budget(slug, amount)


@pytest.mark.django_db(transaction=True)
def test_two_claims_at_the_cap_with_one_slot_left_exactly_one_wins():
    """Real threads, each with its own database connection, released together by a barrier."""
    _cap(FLUX, "0.12")
    first, *racers = _queued(5)
    assert transitions.claim(first.pk, budget=_budget(amount=Decimal("0.08")))  # one $0.04 slot left
    barrier = threading.Barrier(len(racers))
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def claim(attempt_id: int) -> None:
        try:
            barrier.wait()
            results[attempt_id] = transitions.claim(attempt_id, budget=_budget())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(a.pk,)) for a in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(results.values()) == [False, False, False, True]
    states = sorted(Attempt.objects.filter(pk__in=[a.pk for a in racers]).values_list("state", flat=True))
    assert states == ["held", "held", "held", "submitting"]
    assert _row().reserved == Decimal("0.12")
    assert _row(SpendDay.OVERALL).reserved == Decimal("0.12")


@pytest.mark.django_db
def test_a_refusal_by_the_overall_cap_leaves_the_model_counter_untouched(settings):
    settings.STAGING_DAILY_SPEND_LIMIT = Decimal("0.05")
    a, b = _queued(2)
    assert transitions.claim(a.pk, budget=_budget())
    assert not transitions.claim(b.pk, budget=_budget())
    b.refresh_from_db()
    assert b.state == Attempt.State.HELD and "overall" in b.held_reason
    assert b.reserved_on is None and b.estimated_cost == SLOT
    assert _row().reserved == SLOT  # only a's reservation: b's was rolled back with its savepoint
    assert _row(SpendDay.OVERALL).reserved == SLOT


@pytest.mark.django_db
def test_settle_replaces_the_reservation_once():
    [attempt] = _queued(1)
    assert transitions.claim(attempt.pk, budget=_budget())
    ledger.settle(attempt.pk, Decimal("0.03"))
    ledger.settle(attempt.pk, Decimal("0.03"))  # a second ending changes nothing
    assert (_row().reserved, _row().spent) == (Decimal(0), Decimal("0.03"))
    assert (_row("").reserved, _row("").spent) == (Decimal(0), Decimal("0.03"))


@pytest.mark.django_db
def test_cancel_of_a_claimed_attempt_releases_and_of_a_held_one_changes_nothing():
    _cap(FLUX, "0.04")
    a, b = _queued(2)
    assert transitions.claim(a.pk, budget=_budget())
    assert not transitions.claim(b.pk, budget=_budget())
    assert transitions.cancel(b.pk, "no longer wanted")
    assert _row().reserved == SLOT
    assert transitions.cancel(a.pk, "no longer wanted")
    assert (_row().reserved, _row().spent) == (Decimal(0), Decimal(0))


@pytest.mark.django_db
def test_check_budget_says_why_before_anything_is_created(settings):
    assert spend.check_budget(FLUX, Decimal("100")) is None  # no caps
    _cap(FLUX, "0.05")
    assert spend.check_budget(FLUX, SLOT) is None
    reason = spend.check_budget(FLUX, Decimal("0.08"))
    assert reason is not None and "flux-kontext-pro" in reason and "\n" not in reason
    settings.STAGING_DAILY_SPEND_LIMIT = Decimal("0.01")
    assert "overall" in spend.check_budget("seedream-4", Decimal("0.03"))
    [attempt] = _queued(1)
    settings.STAGING_DAILY_SPEND_LIMIT = None
    assert transitions.claim(attempt.pk, budget=_budget())
    assert "flux-kontext-pro" in spend.check_budget(FLUX, Decimal("0.02"))  # 0.04 reserved + 0.02 > 0.05


@pytest.mark.django_db
def test_the_spend_day_is_the_utc_date():
    late_evening_west = datetime(2026, 3, 1, 23, 30, tzinfo=UTC).astimezone(
        datetime(2026, 3, 1, tzinfo=UTC).astimezone().tzinfo
    )
    assert ledger.day_of(late_evening_west).isoformat() == "2026-03-01"
    assert ledger.day_of(datetime(2026, 3, 2, 0, 5, tzinfo=UTC)).isoformat() == "2026-03-02"


@pytest.mark.django_db
def test_resume_lets_through_only_what_fits():
    _cap(FLUX, "0.04")
    held = _queued(3)
    for attempt in held:
        Attempt.objects.filter(pk=attempt.pk).update(state="held", estimated_cost=SLOT, held_reason="cap")
    assert spend.resume_held() == 1
    states = [Attempt.objects.get(pk=a.pk).state for a in held]
    assert states == ["queued", "held", "held"]  # the oldest first
