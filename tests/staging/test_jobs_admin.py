"""The jobs admin through the test client: derived-status filter, detail page, cancel and retry actions."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from staging.models import Attempt, StagingJob

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "admin:staging_stagingjob_changelist"


@pytest.fixture
def jobs(make_job) -> dict[str, StagingJob]:
    """A succeeded job (outputs stored through the real pipeline), a failed one and a running one."""
    done = make_job("flux-kontext-pro", room_type="kitchen")
    from staging.reprocessing import run_job

    assert run_job(done.pk, timeout=20, interval=0.05).status == "succeeded"
    failed = make_job("seedream-4")
    Attempt.objects.filter(job=failed).update(
        state="failed", error="The prediction failed: E1234", error_class="permanent"
    )
    running = make_job("qwen-image-edit")
    Attempt.objects.filter(job=running).update(state="processing", prediction_id=None)
    return {"done": done, "failed": failed, "running": running}


def test_changelist_filters_on_derived_status(staff: Client, jobs) -> None:
    url = reverse(CHANGELIST)
    page = staff.get(url)
    assert page.status_code == 200
    assert page.context["cl"].result_count == 3
    for status, key in (("succeeded", "done"), ("failed", "failed"), ("running", "running")):
        page = staff.get(url, {"status": status})
        assert [job.pk for job in page.context["cl"].result_list] == [jobs[key].pk]
        assert status in page.content.decode()
    page = staff.get(url, {"model_slug": "seedream-4"})
    assert [job.pk for job in page.context["cl"].result_list] == [jobs["failed"].pk]
    assert staff.get(url, {"q": "kitchen"}).context["cl"].result_count == 1


def test_detail_shows_original_outputs_and_attempt_input(staff: Client, jobs) -> None:
    job = jobs["done"]
    attempt = job.attempts.get()
    page = staff.get(reverse("admin:staging_stagingjob_change", args=[job.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert f"/api/v1/jobs/{job.pk}/original" in html and job.photo.url not in html  # links that check permission
    image = attempt.images.get()
    assert f"/api/v1/jobs/{job.pk}/outputs/0?attempt=1" in html  # full size, through the permissioned endpoint
    assert image.file.url not in html
    assert "&quot;input_image&quot;" in html or '"input_image"' in html
    assert attempt.prediction_id in html
    assert attempt.token not in html  # the webhook credential is never shown
    assert "0.0400" in html  # cost
    # Read-only: no save row at all, though "Add" (the workbench) is allowed.
    assert page.context["has_add_permission"]
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"', 'class="closelink"', "submit-row"):
        assert button not in html
    failed_page = staff.get(reverse("admin:staging_stagingjob_change", args=[jobs["failed"].pk])).content.decode()
    assert "The prediction failed: E1234" in failed_page and "Permanent" in failed_page


def test_add_is_the_workbench_and_there_is_no_delete(staff: Client, jobs) -> None:
    assert "Stage photos" in staff.get(reverse("admin:staging_stagingjob_add")).content.decode()
    changelist = staff.get(reverse(CHANGELIST)).content.decode()
    assert reverse("admin:staging_stagingjob_add") in changelist  # the changelist's "Add" leads to the workbench
    assert staff.get(reverse("admin:staging_stagingjob_delete", args=[jobs["done"].pk])).status_code == 403


def test_cancel_and_retry_actions_report_per_job(staff: Client, jobs, emulated) -> None:
    url = reverse(CHANGELIST)
    ids = [jobs["running"].pk, jobs["failed"].pk]
    page = staff.post(url, {"action": "cancel_jobs", "_selected_action": ids}, follow=True)
    text = " | ".join(str(m) for m in page.context["messages"])
    assert f"Job {jobs['running'].pk}: attempt 1 canceled." in text
    assert f"Job {jobs['failed'].pk}: nothing to cancel, it is failed." in text
    assert jobs["running"].attempts.get().state == "canceled"

    running_again = jobs["done"]
    Attempt.objects.create(job=running_again, number=2, state="submitting")
    ids = [jobs["running"].pk, jobs["failed"].pk, running_again.pk]
    page = staff.post(url, {"action": "retry_jobs", "_selected_action": ids, "confirm": "yes"}, follow=True)
    text = " | ".join(str(m) for m in page.context["messages"])
    assert f"Job {jobs['running'].pk}: attempt 2 queued." in text
    assert f"Job {jobs['failed'].pk}: attempt 2 queued." in text
    assert f"Job {running_again.pk}" not in text  # unfinished: skipped (listed on the confirmation page)
    assert running_again.attempts.count() == 2
    # Tasks run inline here: the new attempts went through the emulator and succeeded.
    assert jobs["failed"].attempts.get(number=2).state in ("submitted", "processing", "succeeded")
