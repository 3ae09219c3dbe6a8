"""A version conflict names a model without a version as such: "no version yet", never "vNone"."""

from __future__ import annotations

import json

import pytest

from models_config import services
from models_config.models import ModelConfig
from tests.fixtures.config_rows import forget_config_rows

from .conftest import SLUG

pytestmark = pytest.mark.django_db

API = f"/api/v1/admin/models/{SLUG}/config"


def put(client, base):
    body = {"config": {}, "comment": "mine", "base_version": base}
    return client.put(API, json.dumps(body), content_type="application/json")


def test_the_messages_for_each_side_without_a_version() -> None:
    assert str(services.VersionConflictError(SLUG, 2, 3)).startswith(f"The active version of {SLUG} is now v3, not v2:")
    no_active = str(services.VersionConflictError(SLUG, 2, None))
    assert no_active.startswith(f"{SLUG} has no version yet, not v2") and "None" not in no_active
    no_base = str(services.VersionConflictError(SLUG, None, 3))
    assert "is now v3; you started when it had no version yet" in no_base and "None" not in no_base


def test_api_conflict_on_a_model_with_no_version(editor_client) -> None:
    forget_config_rows()
    ModelConfig.objects.create(slug=SLUG)  # a row without any version
    response = put(editor_client, 4)
    assert response.status_code == 409
    body = response.json()
    assert "has no version yet" in body["detail"] and "vNone" not in body["detail"]
    assert body["active_version"] is None


def test_api_conflict_when_the_client_thought_there_was_none(rows, editor_client) -> None:
    response = put(editor_client, None)
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "no version yet" in detail and "vNone" not in detail and "v1 is by nobody (system)" in detail


def test_admin_form_conflict_without_a_base_version(rows, editor_client) -> None:
    row = rows[SLUG]
    config = services.get_spec(SLUG).default_config().model_dump(mode="json")
    data = {"config": json.dumps(config), "comment": "mine", "base_version": ""}
    response = editor_client.post(f"/admin/models_config/modelconfig/{row.pk}/change/", data)
    errors = str(response.context["adminform"].form.non_field_errors())
    assert "no version yet" in errors and "vNone" not in errors
