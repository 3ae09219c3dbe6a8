"""The admin's retry action in a real Chromium: select jobs, run the action, read the confirmation page,
press Cancel, and nothing was spent (no attempt, no prediction)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections

from staging.models import Attempt
from tests.models_config.test_admin_browser import CHROMIUM_ARGS

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(live_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(10_000)
            yield page
        finally:
            browser.close()
            connections.close_all()  # see tests/models_config/test_admin_browser.py


def test_cancel_at_the_confirmation_page_spends_nothing(page, live_server, make_job, emulated, tmp_path: Path) -> None:
    jobs = [make_job("flux-kontext-pro"), make_job("seedream-4")]
    Attempt.objects.filter(job__in=jobs).update(state="failed", error="boom")
    creates = emulated.counters()["creates_total"]
    User.objects.create_superuser("admin", "admin@example.com", "pw-admin")

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw-admin")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/staging/stagingjob/")
    for job in jobs:
        page.check(f'input[name="_selected_action"][value="{job.pk}"]')
    page.select_option('select[name="action"]', "retry_jobs")
    page.click('button[name="index"]')

    page.locator("#retry-summary").wait_for()
    assert page.locator("#retry-count").inner_text() == "2"
    assert page.locator("#retry-total").inner_text() == "$0.07"
    assert page.locator("#retry-confirm").input_value() == "Confirm: spend about $0.07"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    page.screenshot(path=str(artifacts / "retry-confirmation.png"), full_page=True)
    assert (artifacts / "retry-confirmation.png").stat().st_size > 0

    page.click("#retry-cancel")
    page.wait_for_url(f"{live_server.url}/admin/staging/stagingjob/")
    assert Attempt.objects.count() == 2  # no new attempt
    assert emulated.counters()["creates_total"] == creates  # and no prediction
