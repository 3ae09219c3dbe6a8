"""The config admin through the Django test client: edit, errors, history, rollback, reset, diff, preview."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from models_config import services
from models_config.jsonform import adapted_schema
from models_config.models import ModelConfig, ModelConfigVersion
from tests.fixtures.users import logged_in

from .conftest import SLUG

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/models_config/modelconfig/"


def change_url(row: ModelConfig, suffix: str = "change/") -> str:
    return f"{CHANGELIST}{row.pk}/{suffix}"


def widget_config(response) -> dict:
    """The JSON config django-jsonform's widget is rendered with (schema, data, errorMap)."""
    html = response.content.decode()
    match = re.search(r'data-django-jsonform="([^"]*)"', html)
    assert match, "no django-jsonform widget on the page"
    from html import unescape

    return json.loads(unescape(match.group(1)))


def post_config(client: Client, row: ModelConfig, config: dict, *, comment: str = "tune", base: int | None = 1):
    data = {"config": json.dumps(config), "comment": comment, "base_version": "" if base is None else str(base)}
    return client.post(change_url(row), data)


def defaults(slug: str = SLUG) -> dict:
    return services.get_spec(slug).default_config().model_dump(mode="json")


def test_changelist_lists_the_rows_migrate_created_with_active_versions(editor_client: Client) -> None:
    assert ModelConfig.objects.count() == len(services.REGISTRY)  # by `migrate`: the page itself never writes
    response = editor_client.get(CHANGELIST)
    assert response.status_code == 200
    assert ModelConfig.objects.count() == len(services.REGISTRY)
    html = response.content.decode()
    for title in ("Qwen Image Edit", "Seedream 4", "FLUX.1 Kontext [pro]"):
        assert title in html
    assert "Initial version: code defaults" in html
    assert "Add model configuration" not in html  # rows come from the registry only


def test_change_form_renders_the_adapted_schema_and_active_config(rows, editor_client: Client) -> None:
    response = editor_client.get(change_url(rows[SLUG]))
    assert response.status_code == 200
    config = widget_config(response)
    assert config["schema"] == adapted_schema(SLUG)
    assert json.loads(config["data"]) == defaults()
    assert config["readonly"] is False
    form = response.context["adminform"].form
    assert form.fields["config"].widget.get_schema() == adapted_schema(SLUG)
    assert form.initial["base_version"] == 1
    html = response.content.decode()
    assert 'name="comment"' in html and 'name="_save"' in html
    assert 'id="config-history"' in html and "Reset to defaults" in html and 'id="canary"' in html


def test_invalid_post_shows_errors_under_inputs_and_stores_nothing(rows, editor_client: Client) -> None:
    response = post_config(editor_client, rows[SLUG], {**defaults(), "output_quality": 150})
    assert response.status_code == 200  # the form again, not a redirect
    assert widget_config(response)["errorMap"] == {"output_quality": ["This value must not be greater than 100"]}
    assert ModelConfigVersion.objects.filter(model_config__slug=SLUG).count() == 1


def test_pydantic_errors_are_mapped_under_their_inputs(rows, editor_client: Client) -> None:
    """Rules only pydantic knows (cross-field, placeholders) still land under the right input."""
    row = rows["seedream-4"]
    config = {**defaults("seedream-4"), "width": 2048, "prompt_template": "Stage this {room} nicely"}
    response = post_config(editor_client, row, config)
    assert response.status_code == 200
    error_map = widget_config(response)["errorMap"]
    assert "only when size is 'custom'" in error_map["width"][0]
    assert "Found: {room}." in error_map["prompt_template"][0]
    assert ModelConfigVersion.objects.filter(model_config=row).count() == 1


def test_comment_is_required(rows, editor_client: Client) -> None:
    response = post_config(editor_client, rows[SLUG], defaults(), comment="")
    assert response.status_code == 200
    assert "comment" in response.context["adminform"].form.errors
    assert ModelConfigVersion.objects.filter(model_config__slug=SLUG).count() == 1


def test_valid_post_creates_the_next_version_with_comment_and_author(rows, editor, editor_client: Client) -> None:
    response = post_config(editor_client, rows[SLUG], {**defaults(), "output_quality": 80}, comment="smaller files")
    assert response.status_code == 302
    row = ModelConfig.objects.get(slug=SLUG)
    version = row.active_version
    assert (version.number, version.comment, version.author, version.config["output_quality"]) == (
        2,
        "smaller files",
        editor,
        80,
    )
    page = editor_client.get(change_url(row))
    assert json.loads(widget_config(page)["data"])["output_quality"] == 80
    assert 'data-version="2"' in page.content.decode()


def test_stale_base_version_is_a_form_error(rows, editor, editor_client: Client) -> None:
    services.save_version(SLUG, {**defaults(), "go_fast": False}, author=editor, comment="someone else")
    response = post_config(editor_client, rows[SLUG], defaults(), base=1)
    assert response.status_code == 200
    assert "is now v2, not v1" in str(response.context["adminform"].form.non_field_errors())
    assert ModelConfig.objects.get(slug=SLUG).active_version.number == 2


def test_activate_an_old_version(rows, editor, editor_client: Client) -> None:
    services.save_version(SLUG, {**defaults(), "go_fast": False}, author=editor, comment="v2")
    response = editor_client.post(change_url(rows[SLUG], "versions/1/activate/"), {"base_version": "2"})
    assert response.status_code == 302
    row = ModelConfig.objects.get(slug=SLUG)
    assert row.active_version.number == 1
    assert row.versions.count() == 2  # rollback copies nothing
    # a stale base version is refused
    response = editor_client.post(change_url(rows[SLUG], "versions/2/activate/"), {"base_version": "2"}, follow=True)
    assert "is now v1, not v2" in response.content.decode()
    assert ModelConfig.objects.get(slug=SLUG).active_version.number == 1
    assert editor_client.get(change_url(rows[SLUG], "versions/1/activate/")).status_code == 405


def test_reset_to_defaults(rows, editor, editor_client: Client) -> None:
    services.save_version(SLUG, {**defaults(), "output_quality": 10}, author=editor, comment="v2")
    response = editor_client.post(change_url(rows[SLUG], "reset/"), {"comment": ""})
    assert response.status_code == 302
    version = ModelConfig.objects.get(slug=SLUG).active_version
    assert (version.number, version.config, version.comment, version.author) == (
        3,
        defaults(),
        services.RESET_COMMENT,
        editor,
    )


def test_diff_between_versions(rows, editor, editor_client: Client) -> None:
    services.save_version(SLUG, {**defaults(), "output_quality": 70}, author=editor, comment="v2")
    services.save_version(SLUG, {**defaults(), "output_quality": 60, "go_fast": False}, author=editor, comment="v3")
    response = editor_client.get(change_url(rows[SLUG], "diff/"), {"a": 1})
    assert response.status_code == 200
    changes = {c.key: (c.old, c.new) for c in response.context["diff"].changes}
    assert changes == {"output_quality": (95, 60), "go_fast": (True, False)}
    response = editor_client.get(change_url(rows[SLUG], "diff/"), {"a": 2, "b": 3})
    assert {c.key for c in response.context["diff"].changes} == {"output_quality", "go_fast"}
    assert response.context["diff"].old.number == 2
    assert editor_client.get(change_url(rows[SLUG], "diff/"), {"a": 9}).status_code == 404


def test_preview_of_a_draft_shows_the_exact_replicate_input(rows, editor_client: Client) -> None:
    draft = {**defaults(), "output_quality": 42, "seed": 7}
    response = editor_client.post(change_url(rows[SLUG], "preview/"), {"config": json.dumps(draft)})
    assert response.status_code == 200
    replicate_input = response.context["preview"].replicate_input
    assert replicate_input["image"] == "https://example.com/sample-empty-room.jpg"
    assert replicate_input["output_quality"] == 42 and replicate_input["seed"] == 7
    assert "empty living room" in replicate_input["prompt"] and "Scandinavian" in replicate_input["prompt"]
    assert "prompt_template" not in replicate_input
    assert ModelConfigVersion.objects.filter(model_config__slug=SLUG).count() == 1  # nothing saved
    changelist = reverse("admin:models_config_modelconfig_changelist")
    for page in (response, editor_client.get(change_url(rows[SLUG], "diff/"), {"a": 1})):
        crumbs = page.content.decode().split('class="breadcrumbs"', 1)[1].split("</div>", 1)[0]
        assert f'href="{changelist}"' in crumbs and f'href="{change_url(rows[SLUG])}"' in crumbs


def test_preview_of_an_invalid_draft_shows_the_errors(rows, editor_client: Client) -> None:
    response = editor_client.post(change_url(rows[SLUG], "preview/"), {"config": json.dumps({"output_quality": -1})})
    assert response.status_code == 200
    assert response.context["preview"].replicate_input is None
    assert "output_quality" in response.content.decode()
    assert "greater than or equal to 0" in response.content.decode()


def test_view_only_staff_sees_read_only_and_cannot_change(rows, viewer_client: Client) -> None:
    row = rows[SLUG]
    page = viewer_client.get(change_url(row))
    assert page.status_code == 200
    html = page.content.decode()
    assert widget_config(page)["readonly"] is True
    assert 'name="_save"' not in html and "Activate this version" not in html and "Reset to defaults" not in html
    assert viewer_client.get(change_url(row, "diff/"), {"a": 1}).status_code == 200
    assert viewer_client.get(change_url(row, "preview/")).status_code == 200
    for suffix, data in [
        ("change/", {"config": json.dumps(defaults()), "comment": "x", "base_version": "1"}),
        ("versions/1/activate/", {}),
        ("reset/", {}),
        ("preview/", {"config": json.dumps(defaults())}),
    ]:
        assert viewer_client.post(change_url(row, suffix), data).status_code == 403, suffix
    assert ModelConfigVersion.objects.filter(model_config=row).count() == 1


def test_staff_without_permission_gets_403(rows, staff_no_perm: User) -> None:
    client = logged_in(staff_no_perm)
    assert client.get(change_url(rows[SLUG])).status_code == 403
    assert client.get(change_url(rows[SLUG], "diff/"), {"a": 1}).status_code == 403
