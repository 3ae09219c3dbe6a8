"""The admin's retry action in a real Chromium: select jobs, run the action, read the confirmation page,
press Cancel, and nothing was spent (no attempt, no prediction)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from staging.models import Attempt
from tests.fixtures.browser import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_cancel_at_the_confirmation_page_spends_nothing(
    browser_page, live_server, make_job, emulated, screenshot
) -> None:
    jobs = [make_job("flux-kontext-pro"), make_job("seedream-4")]
    Attempt.objects.filter(job__in=jobs).update(state="failed", error="boom")
    creates = emulated.counters()["creates_total"]
    User.objects.create_superuser("admin", "admin@example.com", "pw-admin")

    page = browser_page
    admin_login(page, live_server.url, "admin", "pw-admin")
    page.goto(f"{live_server.url}/admin/staging/stagingjob/")
    for job in jobs:
        page.check(f'input[name="_selected_action"][value="{job.pk}"]')
    page.select_option('select[name="action"]', "retry_jobs")
    page.click('button[name="index"]')

    page.locator("#retry-summary").wait_for()
    assert page.locator("#retry-count").inner_text() == "2"
    assert page.locator("#retry-total").inner_text() == "$0.07"
    assert page.locator("#retry-confirm").input_value() == "Confirm: spend about $0.07"
    screenshot("retry-confirmation")

    page.click("#retry-cancel")
    page.wait_for_url(f"{live_server.url}/admin/staging/stagingjob/")
    assert Attempt.objects.count() == 2  # no new attempt
    assert emulated.counters()["creates_total"] == creates  # and no prediction
