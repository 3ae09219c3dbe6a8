"""The admin's spend page in a real Chromium: reached from the admin index, bars drawn, a limit saved."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from models_config.models import ConfigEvent, ModelConfig
from staging.models import Attempt, StagingJob

pytestmark = pytest.mark.browser


def _spent(slug: str, cost: str) -> None:
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug=slug)
    Attempt.objects.create(job=job, number=1, state="succeeded", submitting_at=datetime.now(UTC), cost=Decimal(cost))


def test_spend_page_in_the_browser(admin_page, live_server, screenshot) -> None:
    page = admin_page
    _spent("flux-kontext-pro", "0.08")
    _spent("seedream-4", "0.02")
    assert page.title() == "Workbench | Virtual Staging"  # the admin is branded as the service
    screenshot("admin-index")
    page.get_by_role("link", name="Daily spend").click()
    bars = page.locator("#spend-chart .spend-bar")
    bars.first.wait_for()
    widths = sorted(round(box["width"]) for box in (bar.bounding_box() for bar in bars.all()))
    assert len(widths) == 2 and widths[1] == pytest.approx(4 * widths[0], abs=2)  # 0.08 is four times 0.02

    page.select_option("#id_model", "flux-kontext-pro")
    page.fill("#id_limit", "-1")
    page.click("#spend-limit-form input[type=submit]")
    assert page.locator("#id_limit").evaluate("input => input.validity.rangeUnderflow")  # the form's min=0
    assert ModelConfig.objects.get(slug="flux-kontext-pro").daily_spend_limit is None
    screenshot("spend")

    page.fill("#id_limit", "2.50")
    page.fill("#id_comment", "launch week")
    page.click("#spend-limit-form input[type=submit]")
    page.get_by_text("Daily limit of flux-kontext-pro saved.").wait_for()
    assert page.locator("#spend-limits").get_by_text("2.50").is_visible()
    screenshot("spend-limit-saved")
    event = ConfigEvent.objects.get(kind="spend_limit")
    assert (event.data, event.comment) == ({"old": None, "new": "2.50"}, "launch week")
