"""A version's comment is required and at most 500 characters: one rule (`models_config.models.clean_comment`)
that the config API, the admin form and `services.save_version` all apply, with the model field's length.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pydantic_core import PydanticCustomError, PydanticKnownError

from models_config import services
from models_config.forms import ModelConfigForm
from models_config.models import COMMENT_MAX_LENGTH, ModelConfig, ModelConfigVersion, clean_comment
from tests.fixtures.config_rows import changed_config

SLUG = "qwen-image-edit"
REFUSED = [
    pytest.param("", "missing", id="empty"),
    pytest.param("  \n ", "missing", id="blank"),
    pytest.param("x" * (COMMENT_MAX_LENGTH + 1), "string_too_long", id="too-long"),
]
ACCEPTED = [
    pytest.param("  warmer light \n", "warmer light", id="stripped"),
    pytest.param("x" * COMMENT_MAX_LENGTH, "x" * COMMENT_MAX_LENGTH, id="longest"),
    pytest.param(" " + "x" * COMMENT_MAX_LENGTH + " ", "x" * COMMENT_MAX_LENGTH, id="longest-padded"),
]


@pytest.fixture
def editor(db) -> User:
    services.ensure_config_rows()
    return User.objects.create_superuser("editor", password="pw")


def versions() -> list[str]:
    return list(ModelConfigVersion.objects.filter(model_config__slug=SLUG).values_list("comment", flat=True))


def via_api(editor: User, comment: str) -> tuple[bool, object]:
    client = Client()
    client.force_login(editor)
    base = ModelConfig.objects.get(slug=SLUG).active_version.number
    body = {"config": changed_config(SLUG), "comment": comment, "base_version": base}
    response = client.put(f"/api/v1/admin/models/{SLUG}/config", json.dumps(body), "application/json")
    if response.status_code == 201:
        return True, None
    assert response.status_code == 422, response.content
    (error,) = response.json()["detail"]
    assert error["loc"][0] == "body" and error["loc"][-1] == "comment"
    return False, error["type"]


def via_admin(editor: User, comment: str) -> tuple[bool, object]:
    client = Client()
    client.force_login(editor)
    row = ModelConfig.objects.get(slug=SLUG)
    config = json.dumps(changed_config(SLUG))
    data = {"config": config, "comment": comment, "base_version": str(row.active_version.number)}
    response = client.post(f"/admin/models_config/modelconfig/{row.pk}/change/", data)
    if response.status_code == 302:
        return True, None
    assert response.status_code == 200  # the form again, with the error under the comment
    assert list(response.context["adminform"].form.errors) == ["comment"]
    return False, None


def via_service(editor: User, comment: str) -> tuple[bool, object]:
    try:
        services.save_version(SLUG, changed_config(SLUG), author=editor, comment=comment)
    except services.ConfigValidationError as exc:
        (error,) = exc.errors
        assert error["loc"] == ["comment"] and exc.loc_prefix == ()
        return False, error["type"]
    return True, None


ENTRY_POINTS = [pytest.param(via_api, id="api"), pytest.param(via_admin, id="admin"), pytest.param(via_service)]


@pytest.mark.parametrize("save", ENTRY_POINTS)
@pytest.mark.parametrize(("comment", "error_type"), REFUSED)
def test_every_entry_point_refuses_the_same_comments(editor, save, comment, error_type) -> None:
    before = versions()
    accepted, reported = save(editor, comment)
    assert not accepted and versions() == before
    assert reported in (error_type, None)  # the admin shows a message, not a type


@pytest.mark.parametrize("save", ENTRY_POINTS)
@pytest.mark.parametrize(("comment", "stored"), ACCEPTED)
def test_every_entry_point_stores_the_same_comments_stripped(editor, save, comment, stored) -> None:
    accepted, _ = save(editor, comment)
    assert accepted and versions()[0] == stored


def test_the_rule_itself() -> None:
    assert clean_comment("  why  ") == "why"
    with pytest.raises(PydanticCustomError, match="Say what changed and why"):
        clean_comment(None)
    with pytest.raises(PydanticKnownError, match=f"at most {COMMENT_MAX_LENGTH} characters"):
        clean_comment("x" * (COMMENT_MAX_LENGTH + 1))
    assert ModelConfigVersion._meta.get_field("comment").max_length == COMMENT_MAX_LENGTH
    form_widget = ModelConfigForm.base_fields["comment"].widget
    assert form_widget.attrs["maxlength"] == COMMENT_MAX_LENGTH
