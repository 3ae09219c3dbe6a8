"""The admin's "retry selected jobs" action: a confirmation page first; Cancel spends nothing, Confirm
creates the attempts through the command's own preflight and start."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from staging import emulation
from staging.models import Attempt, StagingJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def selection(make_job) -> dict[str, StagingJob]:
    """Two finished jobs (flux $0.04, seedream $0.03) and one still running."""
    flux, seedream, running = make_job("flux-kontext-pro"), make_job("seedream-4"), make_job("qwen-image-edit")
    Attempt.objects.filter(job__in=[flux, seedream]).update(state="failed", error="boom")
    Attempt.objects.filter(job=running).update(state="processing")
    return {"flux": flux, "seedream": seedream, "running": running}


def _post(staff: Client, ids: list[int], **extra: str):
    url = reverse("admin:staging_stagingjob_changelist")
    return staff.post(url, {"action": "retry_jobs", "_selected_action": ids, **extra})


def test_the_action_first_shows_count_cost_and_skipped_jobs_and_spends_nothing(staff, selection, emulated) -> None:
    creates = emulated.counters()["creates_total"]
    page = _post(staff, [job.pk for job in selection.values()])
    html = page.content.decode()
    assert page.status_code == 200
    assert page.context["review"].total == Decimal("0.07")
    assert '<strong id="retry-count">2</strong>' in html
    assert '<strong id="retry-total">$0.07</strong>' in html
    assert f"job {selection['running'].pk} (running)" in html
    assert 'id="retry-confirm"' in html and 'id="retry-cancel"' in html
    assert Attempt.objects.count() == 3 and emulated.counters()["creates_total"] == creates


def test_cancel_is_a_link_back_that_spends_nothing(staff, selection, emulated) -> None:
    page = _post(staff, [selection["flux"].pk])
    cancel_url = reverse("admin:staging_stagingjob_changelist")
    assert f'href="{cancel_url}" id="retry-cancel"' in page.content.decode()
    assert staff.get(cancel_url).status_code == 200
    assert Attempt.objects.count() == 3


def test_confirm_creates_one_attempt_per_finished_job(staff, selection, emulated) -> None:
    ids = [job.pk for job in selection.values()]
    page = _post(staff, ids)
    expected = {f"expected-{job.pk}": "1" for job in (selection["flux"], selection["seedream"])}
    assert all(f'name="{name}" value="1"' in page.content.decode() for name in expected)
    done = staff.post(
        reverse("admin:staging_stagingjob_changelist"),
        {"action": "retry_jobs", "_selected_action": ids, "confirm": "yes", **expected},
        follow=True,
    )
    text = " | ".join(str(m) for m in done.context["messages"])
    assert f"Job {selection['flux'].pk}: attempt 2 queued." in text
    assert f"Job {selection['seedream'].pk}: attempt 2 queued." in text
    assert selection["running"].attempts.count() == 1
    assert Attempt.objects.count() == 5


def test_confirming_a_page_that_another_retry_overtook_adds_nothing(staff, selection, emulated) -> None:
    job = selection["flux"]
    stale = {f"expected-{job.pk}": "1"}
    first = staff.post(
        reverse("admin:staging_stagingjob_changelist"),
        {"action": "retry_jobs", "_selected_action": [job.pk], "confirm": "yes", **stale},
        follow=True,
    )
    assert "attempt 2 queued" in " ".join(str(m) for m in first.context["messages"])
    Attempt.objects.filter(job=job, number=2).update(state="failed")  # that attempt ended meanwhile
    again = staff.post(  # the same confirmation page, submitted a second time
        reverse("admin:staging_stagingjob_changelist"),
        {"action": "retry_jobs", "_selected_action": [job.pk], "confirm": "yes", **stale},
        follow=True,
    )
    assert "was reprocessed meanwhile" in " ".join(str(m) for m in again.context["messages"])
    assert job.attempts.count() == 2


def test_preflight_problems_are_shown_and_confirm_is_refused(
    staff, selection, emulated, settings, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(emulation, "runtime_path", lambda: tmp_path / emulation.RUNTIME_FILE)
    settings.REPLICATE_API_TOKEN = ""
    ids = [selection["flux"].pk]
    page = _post(staff, ids)
    html = page.content.decode()
    assert "REPLICATE_API_TOKEN is not set" in html and 'id="retry-confirm"' not in html
    page = _post(staff, ids, confirm="yes")
    assert page.status_code == 200 and "REPLICATE_API_TOKEN is not set" in page.content.decode()
    assert selection["flux"].attempts.count() == 1
