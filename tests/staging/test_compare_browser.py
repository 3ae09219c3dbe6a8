"""The staff workbench in a real Chromium at 1,280 px: the before/after slider, choosing an output, the
version diff picked in the history, and a playground try shown beside the earlier output."""

from __future__ import annotations

import json

import pytest

from models_config import services as config_services
from models_config.models import ModelConfig
from models_config.selectors import get_active_config
from staging import services
from staging.models import StagingJob
from staging.reprocessing import run_job
from tests.fixtures.pipeline import drive
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SLUG = "flux-kontext-pro"


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_slider_drags_and_an_earlier_output_is_chosen(admin_page, screenshot, live_server, make_job) -> None:
    page = admin_page
    job = make_job(SLUG, room_type="kitchen")
    assert run_job(job.pk, timeout=20, interval=0.05).status == "succeeded"
    services.retry_job(job.pk)
    assert run_job(job.pk, timeout=20, interval=0.05).status == "succeeded"

    page.goto(f"{live_server.url}/admin/staging/stagingjob/{job.pk}/change/")
    page.wait_for_function("document.querySelector('.ba-before').complete")
    assert page.locator(".compare-attempt").count() == 2
    after = page.locator(".ba-after")
    box = page.locator("#ba-slider").bounding_box()
    start = after.bounding_box()["width"]
    assert abs(start - box["width"] / 2) < 3  # starts in the middle
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    dragged = after.bounding_box()["width"]
    assert abs(dragged - box["width"] * 0.2) < 3  # the clip follows the pointer
    assert page.locator("#ba-range").input_value() == "20"

    first = page.locator("#attempt-1 .compare-output")
    first.locator(".compare-with").click()
    assert "attempt=1" in page.locator(".ba-after-img").get_attribute("src")
    assert fits(page)
    screenshot("job-compare")

    first.locator(".choose-output").click()
    page.get_by_text("Output 1 of attempt 1 will be delivered.").wait_for()
    assert StagingJob.objects.get(pk=job.pk).chosen_output.attempt.number == 1
    assert page.locator("#attempt-1 .compare-output.is-chosen").count() == 1
    screenshot("job-chosen")


def test_diff_of_two_versions_picked_in_the_history(admin_page, screenshot, live_server) -> None:
    page = admin_page
    config_services.ensure_config_rows()
    row = ModelConfig.objects.get(slug=SLUG)
    base = dict(row.active_version.config)
    long_prompt = "Virtually stage this {room_type} " + "with tasteful furniture and soft light " * 12 + "{style}."
    config_services.save_version(SLUG, {**base, "prompt_template": long_prompt}, author=None, comment="long prompt")
    edited = long_prompt.replace("soft light with", "warm light with", 1)
    config_services.save_version(SLUG, {**base, "prompt_template": edited}, author=None, comment="warmer")

    page.goto(f"{live_server.url}/admin/models_config/modelconfig/{row.pk}/change/")
    template = page.locator('textarea[name="rjf§prompt_template"]')
    template.wait_for()
    assert template.bounding_box()["width"] >= 600  # wide enough for a paragraph
    assert page.title() == "FLUX.1 Kontext [pro] | Change model configuration | Virtual Staging"
    assert fits(page)
    # The canary module follows the floated form: it must start below it, or its heading's blue band
    # spreads behind the whole form.
    form_box = page.locator("#modelconfig_form").bounding_box()
    assert page.locator("#canary").bounding_box()["y"] >= form_box["y"] + form_box["height"] - 1
    screenshot("config-change")
    screenshot("config-change-viewport", full_page=False)
    page.check('input[name="a"][value="1"]')
    page.check('input[name="b"][value="3"]')
    page.click("#compare-versions")
    page.wait_for_selector("#config-diff")
    assert "a=1" in page.url and "b=3" in page.url
    assert page.locator("#config-diff ins").count() >= 1
    inserted = " ".join(page.locator("#config-diff ins").all_inner_texts())
    assert "warm" in inserted and "Virtually" not in inserted  # only the changed words are marked
    assert fits(page)
    screenshot("config-diff")

    page.select_option("#diff-a", "2")
    page.click("#diff-picker-form input[type=submit]")
    page.wait_for_url("**a=2**")
    assert page.locator("#config-diff del").first.inner_text() == "soft"
    assert fits(page)


def test_playground_try_shows_the_result_beside_the_earlier_output(
    admin_page, screenshot, live_server, make_job
) -> None:
    page = admin_page
    source = make_job(SLUG, room_type="bedroom", style="japandi")
    assert run_job(source.pk, timeout=20, interval=0.05).status == "succeeded"
    draft = get_active_config(SLUG).config.model_dump(mode="json")
    draft["prompt_template"] = "Furnish this {room_type} in {style} style with plants."

    page.goto(f"{live_server.url}/admin/playground/{SLUG}/?job={source.pk}")
    page.fill("#id_room_type", "bedroom")
    page.fill("#id_style", "japandi")
    page.fill("#id_config", json.dumps(draft, indent=2))
    page.click("#preview-button")
    page.wait_for_selector("#playground-input")
    assert "Furnish this bedroom in japandi style with plants." in page.inner_text("#playground-input")
    assert page.inner_text("#estimated-cost") == "$0.04"
    assert StagingJob.objects.filter(is_try=True).count() == 0
    assert fits(page)
    screenshot("playground-preview")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#try-button")
    page.wait_for_url("**/admin/playground/tries/**")
    tried = StagingJob.objects.get(is_try=True)
    assert drive(tried) == "succeeded"
    wait_until(lambda: page.locator("#try-output img").count() == 1, 15)  # the page refreshes itself
    assert f"/api/v1/jobs/{source.pk}/outputs/0" in page.locator("#active-output img").get_attribute("src")
    page.wait_for_function("[...document.images].every(img => img.complete && img.naturalWidth > 0)")
    assert fits(page)
    screenshot("playground-result")
