"""The attempt state machine, one transition at a time: who wins a race, what a terminal state refuses.

No HTTP and no queue worker: rows are made directly, follow-up work is captured where `staging.queue`
hands it to django-q2, and time is passed in (`now=`) instead of waited for.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from staging import queue, sweeps, transitions
from staging.models import Attempt, ConfigSource, StagingJob
from staging.predictions import Prediction
from staging.sweeps import Step
from staging.transitions import Adoption

S = Attempt.State
pytestmark = pytest.mark.django_db(transaction=True)  # on_commit work is queued at once, as in production


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...]]]:
    """What the transitions queue, as (task, args), captured where `enqueue` calls django-q2."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(queue, "async_task", lambda func, *args, **_: calls.append((func.rsplit(".", 1)[1], args)))
    return calls


def make_attempt(state: str = S.QUEUED, number: int = 1, job: StagingJob | None = None, **fields) -> Attempt:
    job = job or StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug="flux-kontext-pro")
    return Attempt.objects.create(job=job, number=number, state=state, **fields)


def prediction(pid: str = "p1", status: str = "processing", **extra) -> Prediction:
    return Prediction.from_json({"id": pid, "status": status, **extra})


def reload(attempt: Attempt) -> Attempt:
    return Attempt.objects.get(pk=attempt.pk)


# --- claim and record_input ---------------------------------------------------------------------


def test_only_the_first_claim_wins_and_sets_a_deadline(settings):
    attempt = make_attempt()
    now = timezone.now()
    assert transitions.claim(attempt.pk, now=now)
    assert not transitions.claim(attempt.pk, now=now)
    fresh = reload(attempt)
    assert fresh.state == S.SUBMITTING
    assert fresh.deadline == now + timedelta(seconds=settings.STAGING_ATTEMPT_DEADLINE_SECONDS)


def test_claim_waits_for_the_backoff():
    now = timezone.now()
    attempt = make_attempt(next_retry_at=now + timedelta(seconds=30))
    assert not transitions.claim(attempt.pk, now=now)
    assert transitions.claim(attempt.pk, now=now + timedelta(seconds=31))


def test_a_requeued_attempt_keeps_its_first_deadline(queued):
    attempt = make_attempt()
    first = timezone.now()
    assert transitions.claim(attempt.pk, now=first)
    deadline = reload(attempt).deadline
    assert transitions.requeue(attempt.pk)
    assert queued == [("submit_attempt", (attempt.pk,))]
    assert transitions.claim(attempt.pk, now=first + timedelta(minutes=5))
    assert reload(attempt).deadline == deadline


def test_requeue_refuses_once_the_input_was_recorded(queued):
    attempt = make_attempt(S.SUBMITTING, input={"prompt": "x"})
    assert not transitions.requeue(attempt.pk)
    assert reload(attempt).state == S.SUBMITTING and queued == []


def test_record_input_refuses_an_attempt_that_ended_after_its_claim():
    attempt = make_attempt()
    assert transitions.claim(attempt.pk)
    assert transitions.cancel(attempt.pk, "stop")
    recorded = transitions.record_input(
        attempt.pk, version_id=None, config={}, source=ConfigSource.DEFAULTS, model_input={"prompt": "x"}
    )
    assert not recorded  # so submit never calls create
    assert reload(attempt).input is None


# --- adopt ----------------------------------------------------------------------------------------


def test_adopt_once_then_already():
    attempt = make_attempt(S.SUBMITTING)
    assert transitions.adopt(attempt.pk, "p1") is Adoption.ADOPTED
    assert transitions.adopt(attempt.pk, "p1") is Adoption.ALREADY
    fresh = reload(attempt)
    assert fresh.state == S.SUBMITTED and fresh.prediction_id == "p1"


def test_a_second_prediction_for_one_attempt_is_an_orphan():
    attempt = make_attempt(S.SUBMITTING)
    assert transitions.adopt(attempt.pk, "p1") is Adoption.ADOPTED
    assert transitions.adopt(attempt.pk, "p2") is Adoption.ORPHAN
    assert reload(attempt).prediction_id == "p1"


def test_a_prediction_for_an_ended_attempt_is_an_orphan():
    attempt = make_attempt(S.SUBMITTING)
    transitions.cancel(attempt.pk, "stop")
    assert transitions.adopt(attempt.pk, "p1") is Adoption.ORPHAN
    assert reload(attempt).prediction_id is None


def test_a_prediction_owned_by_another_attempt_clashes():
    owner = make_attempt(S.SUBMITTED, prediction_id="p1")
    other = make_attempt(S.SUBMITTING, number=2, job=owner.job)
    assert transitions.adopt(other.pk, "p1") is Adoption.CLASH
    assert reload(other).state == S.SUBMITTING


# --- apply_update ---------------------------------------------------------------------------------


def test_updates_only_move_forward():
    attempt = make_attempt(S.SUBMITTED, prediction_id="p1")
    transitions.apply_update(attempt, prediction(status="processing", metrics={"predict_time": 1.5}))
    assert reload(attempt).state == S.PROCESSING and reload(attempt).predict_time == 1.5
    later = timezone.now() + timedelta(seconds=5)
    transitions.apply_update(reload(attempt), prediction(status="starting"), now=later)
    fresh = reload(attempt)
    assert fresh.state == S.PROCESSING  # older news does not move it back
    assert fresh.checked_at != later  # and is not even noted: it is not news about this state


def test_the_same_state_again_notes_that_we_heard():
    attempt = make_attempt(S.PROCESSING, prediction_id="p1")
    later = timezone.now() + timedelta(seconds=5)
    transitions.apply_update(attempt, prediction(status="processing"), now=later)
    assert reload(attempt).checked_at == later


def test_success_queues_one_collection_whatever_is_delivered_twice(queued):
    attempt = make_attempt(S.PROCESSING, prediction_id="p1")
    done = prediction(status="succeeded", output="https://replicate.delivery/x.png")
    transitions.apply_update(attempt, done)
    transitions.apply_update(reload(attempt), done)
    fresh = reload(attempt)
    assert fresh.state == S.COLLECTING and fresh.output == "https://replicate.delivery/x.png"
    assert queued == [("collect_outputs", (attempt.pk,))]


def test_success_whose_outputs_were_removed_fails_permanently(queued):
    attempt = make_attempt(S.PROCESSING, prediction_id="p1")
    transitions.apply_update(attempt, prediction(status="succeeded", output=None, data_removed=True))
    fresh = reload(attempt)
    assert fresh.state == S.FAILED and fresh.error_class == "permanent" and "data_removed" in fresh.error
    assert queued == []


def test_aborted_counts_as_canceled():
    attempt = make_attempt(S.SUBMITTED, prediction_id="p1")
    transitions.apply_update(attempt, prediction(status="aborted"))
    assert reload(attempt).state == S.CANCELED


def test_an_unknown_status_changes_nothing():
    attempt = make_attempt(S.SUBMITTED, prediction_id="p1")
    transitions.apply_update(attempt, prediction(status="paused"))
    assert reload(attempt).state == S.SUBMITTED


def test_an_update_for_another_prediction_is_refused():
    attempt = make_attempt(S.SUBMITTED, prediction_id="p1")
    with pytest.raises(ValueError):
        transitions.apply_update(attempt, prediction("p2"))


# --- ending ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.FAILED, S.CANCELED])
def test_a_terminal_attempt_refuses_every_change(state, queued):
    attempt = make_attempt(state, prediction_id="p1", error="kept")
    assert not transitions.claim(attempt.pk)
    assert not transitions.fail(attempt.pk, "late", "transient")
    assert not transitions.cancel(attempt.pk, "late")
    assert not transitions.succeed(attempt.pk, Decimal("1"))
    transitions.apply_update(attempt, prediction(status="processing"))
    fresh = reload(attempt)
    assert fresh.state == state and fresh.error == "kept"
    assert Attempt.objects.filter(job=attempt.job).count() == 1 and queued == []


def test_succeed_only_from_collecting_and_records_the_cost():
    attempt = make_attempt(S.PROCESSING, prediction_id="p1")
    assert not transitions.succeed(attempt.pk, Decimal("0.04"))
    Attempt.objects.filter(pk=attempt.pk).update(state=S.COLLECTING)
    assert transitions.succeed(attempt.pk, Decimal("0.04"))
    fresh = reload(attempt)
    assert fresh.state == S.SUCCEEDED and fresh.cost == Decimal("0.04")


def test_fail_and_cancel_race_one_wins():
    attempt = make_attempt(S.PROCESSING, prediction_id="p1")
    assert transitions.cancel(attempt.pk, "stop")
    assert not transitions.fail(attempt.pk, "boom", "permanent")
    assert reload(attempt).state == S.CANCELED


def test_a_transient_failure_schedules_the_next_attempt_with_backoff(settings, queued):
    settings.STAGING_RETRY_BASE_SECONDS = 10
    attempt = make_attempt(S.PROCESSING, prediction_id="p1")
    now = timezone.now()
    assert transitions.fail(attempt.pk, "platform error", "transient", now=now)
    nxt = Attempt.objects.get(job=attempt.job, number=2)
    assert nxt.state == S.QUEUED and nxt.next_retry_at == now + timedelta(seconds=10)
    assert "Retrying as attempt 2" in reload(attempt).error
    assert queued == [("submit_attempt", (nxt.pk,))]  # a delayed task, due at next_retry_at (queue.enqueue_at)


def test_a_429_wait_beats_the_backoff(settings):
    settings.STAGING_RETRY_BASE_SECONDS = 1
    attempt = make_attempt(S.SUBMITTING)
    now = timezone.now()
    transitions.fail(attempt.pk, "throttled", "transient", retry_after=42, now=now)
    assert Attempt.objects.get(job=attempt.job, number=2).next_retry_at == now + timedelta(seconds=42)


def test_no_retry_past_the_paid_attempt_budget(settings):
    settings.STAGING_MAX_ATTEMPTS = 2
    first = make_attempt(S.FAILED)
    last = make_attempt(S.PROCESSING, number=2, job=first.job, prediction_id="p2")
    assert transitions.fail(last.pk, "platform error", "transient")
    assert Attempt.objects.filter(job=first.job).count() == 2
    assert "Gave up after 2 attempt(s)" in reload(last).error


def test_a_permanent_failure_schedules_nothing():
    attempt = make_attempt(S.PROCESSING, prediction_id="p1")
    assert transitions.fail(attempt.pk, "bad input", "permanent")
    assert Attempt.objects.filter(job=attempt.job).count() == 1


def test_one_of_two_collect_takeovers_wins():
    now = timezone.now()
    attempt = make_attempt(S.COLLECTING, prediction_id="p1", checked_at=now - timedelta(minutes=5))
    assert transitions.reclaim_collect(attempt.pk, silent_since=now - timedelta(minutes=1), now=now)
    assert not transitions.reclaim_collect(attempt.pk, silent_since=now - timedelta(minutes=1), now=now)


# --- next_step ------------------------------------------------------------------------------------


def test_next_step_names_what_each_state_needs():
    now = timezone.now()
    assert sweeps.next_step(make_attempt(S.QUEUED), now) is Step.SUBMIT
    assert sweeps.next_step(make_attempt(S.QUEUED, next_retry_at=now + timedelta(seconds=5)), now) is None
    assert sweeps.next_step(make_attempt(S.SUBMITTING), now) is Step.RECONCILE
    assert sweeps.next_step(make_attempt(S.SUBMITTED, prediction_id="a"), now) is Step.POLL
    assert sweeps.next_step(make_attempt(S.PROCESSING, prediction_id="b"), now) is Step.POLL
    assert sweeps.next_step(make_attempt(S.COLLECTING, prediction_id="c"), now) is Step.COLLECT
    for state in Attempt.TERMINAL:
        assert sweeps.next_step(make_attempt(state), now) is None


def test_a_tick_queues_slow_steps_and_the_runner_runs_them(queued):
    attempt = make_attempt(S.COLLECTING, prediction_id="p1")
    assert sweeps.advance(attempt) is Step.COLLECT
    assert queued == [("collect_outputs", (attempt.pk,))]
