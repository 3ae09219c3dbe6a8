"""The one audit history (ConfigEvent) and saves that change nothing: services, API and admin."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client

from models_config import canary, selectors, services
from models_config.models import ConfigEvent, ModelConfig, ModelConfigVersion
from tests.fixtures.config_rows import changed_config

from .conftest import SLUG

pytestmark = pytest.mark.django_db
BASE = f"/api/v1/admin/models/{SLUG}/config"


def versions() -> int:
    return ModelConfigVersion.objects.filter(model_config__slug=SLUG).count()


def history() -> list[tuple[str, int | None, str | None, str]]:
    return [
        (e.kind, e.version.number if e.version_id else None, e.actor_name, e.comment) for e in selectors.events_of(SLUG)
    ]


def defaults() -> dict:
    return services.get_spec(SLUG).default_config().model_dump(mode="json")


# --- every pointer change is an event -----------------------------------------------------------------


def test_every_pointer_change_is_one_event_with_who_and_why(rows, editor: User) -> None:
    assert history() == [("save", 1, None, services.INITIAL_COMMENT)]  # the first version, by the system
    services.save_version(SLUG, changed_config(SLUG), author=editor, comment="warmer")
    services.activate_version(SLUG, 1, actor=editor, comment="too warm")
    services.reset_to_defaults(SLUG, author=editor, comment="clean slate")  # v1 is the defaults: nothing
    services.activate_version(SLUG, 2, actor=editor)
    saved = services.reset_to_defaults(SLUG, author=editor, comment="clean slate")
    canary.start_canary(SLUG, 2, "0.1", actor=editor, comment="retry warm")
    canary.stop_canary(SLUG, actor=editor, comment="no")
    assert saved.created and saved.version.number == 3
    assert history() == [
        ("canary_stop", 2, "editor", "no"),
        ("canary_start", 2, "editor", "retry warm"),
        ("reset", 3, "editor", "clean slate"),
        ("activate", 2, "editor", ""),
        ("activate", 1, "editor", "too warm"),
        ("save", 2, "editor", "warmer"),
        ("save", 1, None, services.INITIAL_COMMENT),
    ]


def test_a_refused_change_leaves_no_event(rows, editor: User) -> None:
    before = history()
    with pytest.raises(services.ConfigValidationError):
        services.save_version(SLUG, {"output_quality": 999}, author=editor, comment="too much")
    with pytest.raises(services.VersionConflictError):
        services.activate_version(SLUG, 1, base_version=7, check_base=True, actor=editor)
    with pytest.raises(services.ConfigValidationError):
        services.activate_version(SLUG, 1, actor=editor, comment="bad\x00comment")
    assert history() == before


def test_events_are_history(rows) -> None:
    event = selectors.events_of(SLUG).first()
    event.comment = "rewritten"
    with pytest.raises(Exception, match="history"):
        event.save()
    with pytest.raises(Exception, match="cannot be deleted"):
        event.delete()


def test_versions_saved_before_the_history_get_their_save_events() -> None:
    services.ensure_config_rows()
    services.save_version(SLUG, changed_config(SLUG), author=None, comment="before the audit")
    ConfigEvent.objects.filter(model_config__slug=SLUG).delete()  # as in a database migrated before 0004
    migration = importlib.import_module("models_config.migrations.0004_canary_extra")
    migration.backfill_save_events(apps, SimpleNamespace(connection=connection))
    migration.backfill_save_events(apps, SimpleNamespace(connection=connection))  # once only
    assert history() == [("save", 2, None, "before the audit"), ("save", 1, None, services.INITIAL_COMMENT)]
    event = selectors.events_of(SLUG).first()
    assert event.created_at == event.version.created_at


# --- identical saves ---------------------------------------------------------------------------------


def test_an_identical_save_or_reset_stores_nothing(rows, editor: User) -> None:
    before = history()
    saved = services.store_config(SLUG, defaults(), author=editor, comment="same again")
    assert (saved.created, saved.version.number) == (False, 1)
    assert services.save_version(SLUG, {}, author=editor, comment="keys left out are the defaults").number == 1
    reset = services.reset_to_defaults(SLUG, author=editor, comment="defaults already")
    patched = services.patch_version(SLUG, {"output_quality": defaults()["output_quality"]}, author=editor, comment="p")
    assert not reset.created and not patched.created
    assert versions() == 1 and history() == before


def test_an_identical_save_with_a_stale_base_is_still_a_conflict(rows, editor: User) -> None:
    services.save_version(SLUG, changed_config(SLUG), author=editor, comment="v2")
    same_as_v2 = ModelConfig.objects.get(slug=SLUG).active_version.config
    with pytest.raises(services.VersionConflictError):
        services.store_config(SLUG, same_as_v2, author=editor, comment="x", base_version=1, check_base=True)


def test_the_api_answers_an_identical_save_200_created_false(rows, editor_client: Client) -> None:
    body = {"config": defaults(), "comment": "same", "base_version": 1}
    response = editor_client.put(BASE, json.dumps(body), "application/json")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["created"], answer["version"]) == (False, 1)
    assert "Nothing changed" in answer["message"] and "no version was created" in answer["message"]
    patch = {"config": {"output_quality": defaults()["output_quality"]}, "comment": "same", "base_version": 1}
    assert editor_client.patch(BASE, json.dumps(patch), "application/json").json()["created"] is False
    body["config"] = changed_config(SLUG)
    response = editor_client.put(BASE, json.dumps(body), "application/json")
    assert (response.status_code, response.json()["created"], response.json()["version"]) == (201, True, 2)
    assert versions() == 2


def last_message(response):
    return list(get_messages(response.wsgi_request))[-1]


def test_the_admin_says_nothing_changed(rows, editor_client: Client) -> None:
    row = ModelConfig.objects.get(slug=SLUG)
    url = f"/admin/models_config/modelconfig/{row.pk}/"
    data = {"config": json.dumps(defaults()), "comment": "same", "base_version": "1"}
    response = editor_client.post(f"{url}change/", data)
    assert response.status_code == 302
    [message] = list(get_messages(response.wsgi_request))  # only ours, not Django's "changed successfully"
    assert message.level_tag == "info" and "Nothing changed" in message.message and "v1" in message.message
    response = editor_client.post(f"{url}reset/", {"base_version": "1"})
    message = last_message(response)
    assert message.level_tag == "info" and "code defaults are active already" in message.message
    data["config"] = json.dumps(changed_config(SLUG))
    response = editor_client.post(f"{url}change/", data)
    message = last_message(response)
    assert message.level_tag == "success" and "Saved v2" in message.message
    assert versions() == 2
