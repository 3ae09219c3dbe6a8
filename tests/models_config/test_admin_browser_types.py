"""The config admin in a real Chromium posts JSON with proper types, so strict configs still save.

django-jsonform builds the posted JSON in the browser: a checkbox must arrive as a boolean, a number
input as an integer, a select as the enum's string. Configs refuse `"yes"` or `"42"`
(tests/models_config/test_strict_configs.py), so only a real browser shows the form still works.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from models_config import services
from models_config.models import ModelConfig

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser_page):
    """The shared Chromium page (tests/fixtures/browser.py), tall enough for the whole editor."""
    browser_page.set_viewport_size({"width": 1280, "height": 1400})
    return browser_page


def open_editor(page, live_server, slug: str) -> ModelConfig:
    services.ensure_config_rows()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.com", "pw-admin")
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "pw-admin")
        page.click("input[type=submit]")
    row = ModelConfig.objects.get(slug=slug)
    page.goto(f"{live_server.url}/admin/models_config/modelconfig/{row.pk}/change/")
    page.locator('textarea[name="rjf§prompt_template"]').wait_for()
    return row


def save(page, comment: str) -> None:
    page.fill("#id_comment", comment)
    with page.expect_navigation():
        page.click('input[name="_continue"]')
    page.get_by_text("and made it active.").wait_for()


def test_checkboxes_numbers_and_selects_arrive_with_their_types(page, live_server) -> None:
    row = open_editor(page, live_server, "qwen-image-edit")
    page.locator('input[name="rjf§go_fast"]').uncheck()
    page.locator('input[name="rjf§disable_safety_checker"]').check()
    page.fill('input[name="rjf§seed"]', "42")
    page.fill('input[name="rjf§output_quality"]', "70")
    page.select_option('select[name="rjf§output_format"]', "png")
    save(page, "typed in the browser")
    row.refresh_from_db()
    config = row.active_version.config
    assert row.active_version.number == 2
    assert (config["go_fast"], config["disable_safety_checker"]) == (False, True)
    assert (config["seed"], config["output_quality"], config["output_format"]) == (42, 70, "png")

    # the seed emptied again means "unset", not "" (which a strict int would refuse)
    page.fill('input[name="rjf§seed"]', "")
    save(page, "random seed again")
    row.refresh_from_db()
    assert row.active_version.number == 3 and row.active_version.config["seed"] is None


def test_optional_sizes_and_enums_of_seedream(page, live_server) -> None:
    row = open_editor(page, live_server, "seedream-4")
    page.select_option('select[name="rjf§size"]', "custom")
    page.fill('input[name="rjf§width"]', "2048")
    page.fill('input[name="rjf§height"]', "1536")
    page.locator('input[name="rjf§enhance_prompt"]').uncheck()
    save(page, "custom size")
    row.refresh_from_db()
    config = row.active_version.config
    assert (config["size"], config["width"], config["height"], config["enhance_prompt"]) == (
        "custom",
        2048,
        1536,
        False,
    )
