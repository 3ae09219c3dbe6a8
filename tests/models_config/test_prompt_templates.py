"""Prompt templates: plain substitution of three placeholders, every other brace refused, a prompt that
is never blank and never over STAGING_MAX_PROMPT_CHARS, checked when a config is written or previewed.

See docs/architecture.md#prompt-templates. The worker side (a template that predates the rules) is in
tests/staging/test_prompt_limits.py.
"""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.test import Client
from pydantic import ValidationError

from models_config import services
from models_config.models import ModelConfig, ModelConfigVersion
from models_config.registry import REGISTRY
from models_config.schemas import (
    DEFAULT_PROMPT_TEMPLATE,
    MAX_INSTRUCTIONS_CHARS,
    MAX_PROMPT_CHARS_CONTEXT,
    MAX_ROOM_TYPE_CHARS,
    MAX_STYLE_CHARS,
    PromptError,
    QwenImageEditConfig,
    check_prompt,
    longest_prompt_chars,
    render_prompt,
)

from .conftest import SLUG

API = f"/api/v1/admin/models/{SLUG}/config"
ADMIN = "/admin/models_config/modelconfig"

# Each is refused as a class: anything in braces but the three names, and any lone brace.
BAD_TEMPLATES = [
    "Stage the {room_type!x} room now",  # a conversion (every submit raised before)
    "Stage the {room_type!r} room now",
    "Stage the {room_type:x>20000000} room now",  # a format spec: a 20-million-character prompt before
    "Stage the {style:>9} room now",
    "Stage the {room_type.upper} room now",  # attribute access
    "Stage the {room_type[0]} room now",  # index access
    "Stage the {0} room now",  # positional
    "Stage the {} room now",
    "Stage the {room} room now",  # unknown name
    "Stage the { room_type } room now",  # not written exactly
    "Stage the {ROOM_TYPE} room now",
    "Stage the {room_type room now",  # unbalanced
    "Stage the room_type} room now",
    "Stage the {{room_type} room now",  # an escape, then a stray closing brace
    "Stage the {room_type:{style}} room now",  # nested
]


def errors_of(template: str, **context) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        QwenImageEditConfig.model_validate({"prompt_template": template}, context=context or None)
    return info.value.errors()


# --- the schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("template", BAD_TEMPLATES)
def test_any_brace_but_the_three_placeholders_is_a_field_error(template: str) -> None:
    (error,) = errors_of(template)
    assert error["loc"] == ("prompt_template",)
    assert "{room_type}, {style}, {instructions}" in error["msg"] and "Found:" in error["msg"]
    with pytest.raises(PromptError):  # the renderer refuses it too, whoever calls it
        render_prompt(template, room_type="bedroom", style="modern")


def test_the_message_names_what_was_found() -> None:
    (error,) = errors_of("Stage {room_type!x} in {style} {nope} now }")
    assert error["msg"].endswith("Found: {room_type!x}, {nope}, a lone '}' at character 43.")
    (error,) = errors_of("Stage the room {" + "x" * 500 + "} now")
    assert len(error["msg"]) < 400  # a long token is shortened, not echoed whole


def test_substitution_is_plain() -> None:
    prompt = render_prompt(
        "A {{literal}} {room_type} in {style}: {instructions} {{{style}}}",
        room_type="{style} {0}",
        style="{instructions:>99}",
        instructions="add a chair",
    )
    # values are inserted as they are (never read as syntax), escapes become single braces
    assert prompt == "A {literal} {style} {0} in {instructions:>99}: Add a chair. {{instructions:>99}}"


def test_the_default_template_renders_as_before() -> None:
    prompt = render_prompt(DEFAULT_PROMPT_TEMPLATE, room_type="bedroom", style="Scandinavian", instructions="")
    assert prompt.startswith("Virtually stage this empty bedroom with furniture and decor in a Scandinavian style. K")
    assert "  " not in prompt


@pytest.mark.parametrize("template", ["{instructions}      ", "{room_type} {style} {instructions}", "   \n\t{style}  "])
def test_a_template_without_text_of_its_own_is_refused(template: str) -> None:
    (error,) = errors_of(template)
    assert error["loc"] == ("prompt_template",) and "text of its own" in error["msg"]


def test_a_blank_or_too_long_prompt_cannot_be_sent() -> None:
    with pytest.raises(PromptError, match="empty"):
        check_prompt("  ", 100)
    with pytest.raises(PromptError, match="101 characters long, over the limit of 100"):
        check_prompt("x" * 101, 100)
    assert check_prompt("x" * 100, 100) == "x" * 100


def test_the_longest_prompt_is_measured_with_the_longest_job_fields() -> None:
    template = "Stage {room_type} in {style}. {instructions} Keep the walls."
    fields = MAX_ROOM_TYPE_CHARS + MAX_STYLE_CHARS + MAX_INSTRUCTIONS_CHARS + 1  # the sentence's period
    assert longest_prompt_chars(template) == len("Stage  in .  Keep the walls.") + fields


def test_the_cap_holds_when_given_as_context() -> None:
    twice = "Describe {instructions} and again {instructions} for the {room_type}."
    assert QwenImageEditConfig.model_validate({"prompt_template": twice}).prompt_template == twice  # a read
    (error,) = errors_of(twice, **{MAX_PROMPT_CHARS_CONTEXT: 4000})
    assert error["type"] == "prompt_too_long" and "over the limit of 4000" in error["msg"]
    limit = longest_prompt_chars(DEFAULT_PROMPT_TEMPLATE)
    ok = {"prompt_template": DEFAULT_PROMPT_TEMPLATE}
    assert QwenImageEditConfig.model_validate(ok, context={MAX_PROMPT_CHARS_CONTEXT: limit})
    assert errors_of(DEFAULT_PROMPT_TEMPLATE, **{MAX_PROMPT_CHARS_CONTEXT: limit - 1})[0]["type"] == "prompt_too_long"


def test_every_models_default_template_fits_the_default_cap(settings) -> None:
    for spec in REGISTRY.values():
        template = spec.default_config().prompt_template
        assert longest_prompt_chars(template) <= settings.STAGING_MAX_PROMPT_CHARS


# --- when a config is written: the API, the admin form, reset, activate ------------------------


def put(client: Client, config: dict, base: int = 1):
    body = {"config": config, "comment": "new template", "base_version": base}
    return client.put(API, json.dumps(body), content_type="application/json")


def stored_versions() -> int:
    return ModelConfigVersion.objects.filter(model_config__slug=SLUG).count()


@pytest.mark.django_db
@pytest.mark.parametrize("template", [*BAD_TEMPLATES[:4], "{instructions}        "])
def test_config_put_refuses_a_bad_template_with_422_and_stores_nothing(rows, editor_client, template) -> None:
    response = put(editor_client, {"prompt_template": template})
    assert response.status_code == 422, response.content
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "config", "prompt_template"]
    assert stored_versions() == 1


@pytest.mark.django_db
def test_config_put_refuses_a_template_over_the_cap(rows, editor_client, settings) -> None:
    settings.STAGING_MAX_PROMPT_CHARS = 2500
    long_template = "Stage the {room_type} in {style}. {instructions} " + "Keep everything unchanged. " * 20
    response = put(editor_client, {"prompt_template": long_template})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "config", "prompt_template"] and "over the limit of 2500" in error["msg"]
    assert stored_versions() == 1
    settings.STAGING_MAX_PROMPT_CHARS = 4000
    assert put(editor_client, {"prompt_template": long_template}).status_code == 201
    assert stored_versions() == 2


@pytest.mark.django_db
def test_the_admin_form_puts_the_template_error_under_its_input(rows, editor_client) -> None:
    row = rows[SLUG]
    config = {**services.get_spec(SLUG).default_config().model_dump(mode="json")}
    config["prompt_template"] = "Stage the {room_type:x>20000000} room now"
    data = {"config": json.dumps(config), "comment": "spec", "base_version": "1"}
    response = editor_client.post(f"{ADMIN}/{row.pk}/change/", data)
    assert response.status_code == 200  # the form again, with errors
    match = re.search(r'data-django-jsonform="([^"]*)"', response.content.decode())
    error_map = json.loads(unescape(match.group(1)))["errorMap"]  # what the widget shows under its inputs
    assert "Found: {room_type:x>20000000}." in error_map["prompt_template"][0]
    assert stored_versions() == 1


@pytest.mark.django_db
def test_reset_and_activate_are_held_to_the_cap(rows, editor_client, settings) -> None:
    settings.STAGING_MAX_PROMPT_CHARS = 1000  # below what the default template needs
    with pytest.raises(services.ConfigValidationError, match="over the limit of 1000"):
        services.reset_to_defaults(SLUG, author=None)
    row = rows[SLUG]
    response = editor_client.post(f"{ADMIN}/{row.pk}/reset/", {"comment": "reset"}, follow=True)
    assert "over the limit of 1000" in response.content.decode()
    response = editor_client.post(f"{ADMIN}/{row.pk}/versions/1/activate/", {"base_version": "1"}, follow=True)
    assert "over the limit of 1000" in response.content.decode()
    assert stored_versions() == 1


@pytest.mark.django_db
def test_the_preview_of_a_version_that_predates_the_rules_shows_the_error(rows, editor_client) -> None:
    row = rows[SLUG]
    bad = {**row.active_version.config, "prompt_template": "Stage the {room_type!x} room now"}
    old = row.versions.create(number=2, config=bad, comment="stored before the template rules")
    response = editor_client.get(f"{ADMIN}/{row.pk}/preview/", {"version": old.number})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.replicate_input is None
    assert preview.errors[0]["loc"] == ["prompt_template"] and "{room_type!x}" in preview.errors[0]["msg"]
    assert "{room_type!x}" in response.content.decode()


@pytest.mark.django_db
def test_a_stored_version_that_predates_the_rules_is_not_used(rows) -> None:
    row = ModelConfig.objects.get(slug=SLUG)
    bad = {**row.active_version.config, "prompt_template": "Stage the {room_type!x} room now"}
    version = row.versions.create(number=2, config=bad, comment="stored before the template rules")
    ModelConfig.objects.filter(pk=row.pk).update(active_version=version)
    active = services.selectors.get_active_config(SLUG)
    assert active.source == "defaults" and "prompt_template" in active.reason
