"""Reconcile finds a lost create however busy the account: it pages back to the claim, and a page cap
reached first keeps the attempt waiting instead of creating it again.

The emulator lists 100 predictions a page, newest first; a few hundred cheap predictions created
through the official client after the lost one bury it several pages deep.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import replicate
from django.utils import timezone
from django_q.conf import Conf

from replicate_emulator import Emulator
from staging import gateway, reconcile, services
from staging.errors import ListTruncated
from staging.models import Attempt
from tests.fixtures.photos import upload
from tests.fixtures.pipeline import attempts

pytestmark = pytest.mark.django_db(transaction=True)
S = Attempt.State
BURY = 250  # newer predictions than the lost one: three pages of the list


def _bury(emu: Emulator, image_url: str, count: int = BURY) -> None:
    """`count` predictions of other inputs, created through the official client (they never finish)."""
    client = replicate.Client(api_token=emu.api_token, base_url=emu.base_url)
    for n in range(count):
        client.models.predictions.create(
            model="black-forest-labs/flux-kontext-pro", input={"prompt": f"another room {n}", "input_image": image_url}
        )


@pytest.fixture
def lost_create(pipeline, monkeypatch) -> Attempt:
    """An attempt whose create reached the emulator but whose answer was dropped, then buried under BURY more."""
    pipeline.set_faults(latency=600, drop_after_create=1)  # predictions keep running: no imaging work
    monkeypatch.setattr(Conf, "SYNC", False)  # the queued reconcile task stays in the queue
    job = services.create_job(upload(), "flux-kontext-pro")
    [attempt] = attempts(job)
    services.submit_attempt(attempt.pk)
    monkeypatch.setattr(Conf, "SYNC", True)
    attempt.refresh_from_db()
    assert attempt.state == S.SUBMITTING and attempt.input is not None and attempt.prediction_id is None
    assert pipeline.counters()["creates_total"] == 1
    _bury(pipeline, attempt.input["input_image"])
    return attempt


def test_a_lost_create_several_pages_deep_is_found(lost_create, pipeline, settings):
    settings.STAGING_RECONCILE_MAX_PAGES = 5
    assert reconcile.reconcile_attempt(lost_create.pk, final=True) == "adopted"
    lost_create.refresh_from_db()
    assert lost_create.prediction_id is not None and lost_create.state in Attempt.IN_FLIGHT
    assert pipeline.get_prediction(lost_create.prediction_id)["input"] == lost_create.input
    assert pipeline.counters()["creates_total"] == 1 + BURY  # nothing created again


def test_the_page_cap_keeps_the_attempt_waiting_never_lost(lost_create, pipeline, settings):
    settings.STAGING_RECONCILE_MAX_PAGES = 2  # 200 predictions read: the lost one is further back
    assert reconcile.reconcile_attempt(lost_create.pk, final=True) == "waiting"
    lost_create.refresh_from_db()
    assert lost_create.state == S.SUBMITTING and lost_create.input is not None
    assert pipeline.counters()["creates_total"] == 1 + BURY
    settings.STAGING_RECONCILE_MAX_PAGES = 3  # a later reconcile with a wider reach finds it
    assert reconcile.reconcile_attempt(lost_create.pk, final=True) == "adopted"
    assert pipeline.counters()["creates_total"] == 1 + BURY


def test_paging_stops_at_predictions_older_than_the_claim(pipeline, settings, monkeypatch, uploaded_image_url):
    """Predictions created before the claim (less the clock skew) are not this attempt's: one page is read,
    and "not listed" is then a proof, so a final reconcile sends the same attempt again."""
    _bury(pipeline, uploaded_image_url, 150)
    monkeypatch.setattr(Conf, "SYNC", False)
    job = services.create_job(upload(), "flux-kontext-pro")
    monkeypatch.setattr(Conf, "SYNC", True)
    [attempt] = attempts(job)
    claimed = timezone.now() + reconcile.CLOCK_SKEW + timedelta(minutes=1)  # the listed ones are all older
    Attempt.objects.filter(pk=attempt.pk).update(
        state=S.SUBMITTING, submitting_at=claimed, input={"prompt": "never sent", "input_image": uploaded_image_url}
    )
    settings.STAGING_RECONCILE_MAX_PAGES = 1  # would be too few if paging did not stop at the claim
    assert reconcile.reconcile_attempt(attempt.pk, final=True) == "lost"
    attempt.refresh_from_db()
    assert attempt.state == S.QUEUED and attempt.input is None and "lost" in attempt.error
    assert Attempt.objects.filter(job=job).count() == 1  # the same attempt, no paid attempt used


def test_the_list_says_when_it_was_cut_short(pipeline, uploaded_image_url):
    _bury(pipeline, uploaded_image_url, 150)
    assert len(list(gateway.iter_recent_predictions(max_pages=2))) == 150  # the whole list fits
    seen = []
    with pytest.raises(ListTruncated, match="1 page"):
        for prediction in gateway.iter_recent_predictions(max_pages=1):
            seen.append(prediction.id)
    assert len(seen) == 100 and len(set(seen)) == 100
