"""The config admin in a real Chromium (Playwright): the widget renders, errors land under inputs, saves work."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from models_config import services
from models_config.models import ModelConfig, ModelConfigVersion
from tests.fixtures.config_rows import changed_config

pytestmark = pytest.mark.browser

SLUG = "qwen-image-edit"


@pytest.fixture
def page(browser_page):
    """The shared Chromium page (tests/fixtures/browser.py), tall enough for the whole editor."""
    browser_page.set_viewport_size({"width": 1280, "height": 1400})
    return browser_page


def open_config_page(page, live_server) -> ModelConfig:
    """Log in as a new superuser "admin" and open the config page of SLUG; returns its row."""
    User.objects.create_superuser("admin", "admin@example.com", "pw-admin")
    row = ModelConfig.objects.get(slug=SLUG)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw-admin")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/models_config/modelconfig/{row.pk}/change/")
    return row


def test_edit_config_in_the_browser(page, live_server, screenshot) -> None:
    services.ensure_config_rows()
    row = open_config_page(page, live_server)
    # the django-jsonform widget renders the schema's fields, with pydantic's titles and help texts
    quality = page.locator('input[name="rjf§output_quality"]')
    quality.wait_for()
    assert quality.input_value() == "95"
    assert page.locator('select[name="rjf§output_format"]').input_value() == "webp"
    assert page.locator('textarea[name="rjf§prompt_template"]').input_value().startswith("Virtually stage")
    assert page.get_by_text("0 to 100; ignored for png.").is_visible()

    # out of range: the error shows under that input, and nothing is stored
    quality.fill("150")
    page.fill("#id_comment", "too much")
    page.click('input[name="_continue"]')
    quality_row = page.locator(".rjf-form-row", has=page.locator('input[name="rjf§output_quality"]'))
    error = quality_row.get_by_text("This value must not be greater than 100")
    error.wait_for()
    assert error.is_visible()
    assert page.locator(".errornote").is_visible()
    assert ModelConfigVersion.objects.filter(model_config=row).count() == 1
    screenshot("config-error")

    # fixed, with a comment: version 2 is created and listed as active
    quality = page.locator('input[name="rjf§output_quality"]')
    assert quality.input_value() == "150"  # the draft survives the failed save
    quality.fill("80")
    with page.expect_popup() as popup_info:  # preview posts the editor's unsaved draft
        page.click("#preview-draft")
    preview = popup_info.value
    preview.wait_for_load_state()
    assert '"output_quality": 80' in preview.inner_text("#preview-input")
    preview.close()
    page.fill("#id_comment", "Smaller files for the gallery")
    page.click('input[name="_continue"]')
    new_row = page.locator('#config-history tr[data-version="2"]')
    new_row.wait_for()
    assert "Smaller files for the gallery" in new_row.inner_text()
    assert "active" in new_row.inner_text()
    assert page.locator('input[name="rjf§output_quality"]').input_value() == "80"
    screenshot("config-saved")

    version = ModelConfig.objects.get(slug=SLUG).active_version
    assert (version.number, version.config["output_quality"], version.author.username) == (2, 80, "admin")


def canary_row() -> ModelConfig:
    return ModelConfig.objects.select_related("candidate_version", "active_version").get(slug=SLUG)


def test_start_a_canary_and_promote_it_in_the_browser(page, live_server, screenshot) -> None:
    services.ensure_config_rows()
    services.save_version(SLUG, changed_config(SLUG, "v2"), author=None, comment="v2 to try")
    services.activate_version(SLUG, 1, comment="v1 stays active for now")
    open_config_page(page, live_server)
    start = page.locator("#canary-start")
    start.locator('select[name="canary_version"]').select_option("2")
    start.locator('input[name="canary_share"]').fill("0.3")
    start.locator('input[name="canary_comment"]').fill("try v2 on 30%")
    start.locator("button").click()
    page.locator("#canary-status", has_text="v2 (candidate) takes 0.300").wait_for()
    assert (canary_row().candidate_version.number, canary_row().canary_share) == (2, Decimal("0.300"))
    screenshot("config-canary-running")
    config_page = page.url
    page.goto(f"{live_server.url}/admin/models_config/modelconfig/")  # the list shows the canary too
    assert page.locator("td.field-canary_display", has_text="v2 on 30.0% of new jobs").is_visible()
    screenshot("config-changelist")
    page.goto(config_page)

    promote = page.locator("#canary-promote")
    promote.locator('input[name="canary_comment"]').fill("v2 wins")
    page.once("dialog", lambda dialog: dialog.accept())  # "Make v2 the active version?"
    promote.locator("button").click()
    page.locator("#canary-status", has_text="No canary").wait_for()
    assert (canary_row().active_version.number, canary_row().candidate_version) == (2, None)
    promoted = page.locator('#config-history tr[data-kind="canary_promote"]')
    assert "v2 wins" in promoted.inner_text() and "admin" in promoted.inner_text()
    screenshot("config-canary-promoted")
