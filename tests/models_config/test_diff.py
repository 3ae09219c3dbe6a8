"""The version diff: any two versions picked in the history, word-level highlighting (escaped), wrapping;
and the admin's look and feel (branding, one message per save, no doubled error note, "v2" not "V2")."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from models_config import services
from models_config.models import ModelConfig
from models_config.worddiff import highlight

from .conftest import SLUG

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/models_config/modelconfig/"


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw-not-used"))
    return client


@pytest.fixture
def three_versions(rows) -> ModelConfig:
    """v1 the defaults, v2 a new prompt with markup in it, v3 a new output quality."""
    row = rows[SLUG]
    config = dict(row.active_version.config)
    config["prompt_template"] = "Stage this {room_type} in a <b>calm</b> {style} style with a large sofa."
    services.save_version(SLUG, config, author=None, comment="calmer prompt")
    services.save_version(SLUG, {**config, "output_quality": 80}, author=None, comment="smaller files")
    row.refresh_from_db()
    return row


def test_highlight_marks_changed_words_and_escapes() -> None:
    old, new = highlight("a <b>calm</b> room with a sofa", "a <b>bright</b> room with two sofas")
    assert old == "a <del>&lt;b&gt;calm&lt;/b&gt;</del> room with <del>a</del> <del>sofa</del>"
    assert new == "a <ins>&lt;b&gt;bright&lt;/b&gt;</ins> room with <ins>two</ins> <ins>sofas</ins>"
    assert highlight(95, 80) == ("<del>95</del>", "<ins>80</ins>")  # numbers shown as JSON


def test_history_picks_any_two_versions(admin_client: Client, three_versions: ModelConfig) -> None:
    html = admin_client.get(f"{CHANGELIST}{three_versions.pk}/change/").content.decode()
    assert '<form id="diff-picker" method="get"' in html
    for number in (1, 2, 3):
        assert f'form="diff-picker" name="a" value="{number}"' in html
        assert f'form="diff-picker" name="b" value="{number}"' in html
    assert re.search(r'name="a" value="2"[^>]*checked', html) and re.search(r'name="b" value="3"[^>]*checked', html)
    assert 'id="compare-versions"' in html

    page = admin_client.get(f"{CHANGELIST}{three_versions.pk}/diff/", {"a": "1", "b": "2"})
    assert page.status_code == 200
    body = page.content.decode()
    table = body[body.index('id="config-diff"') :]
    assert "&lt;b&gt;calm&lt;/b&gt;" in table and "<b>calm</b>" not in table  # the template's markup is escaped
    assert "<ins>" in table and "<del>" in table
    assert "output_quality" not in table  # v1 → v2 changed only the prompt
    assert 'name="a"' in body and '<option value="1" selected>' in body and '<option value="2" selected>' in body
    assert "models_config/diff.css" in body
    later = admin_client.get(f"{CHANGELIST}{three_versions.pk}/diff/", {"a": "2", "b": "3"}).content.decode()
    assert "<del>95</del>" in later and "<ins>80</ins>" in later and "prompt_template" not in later


def test_branding_and_one_message_per_save(admin_client: Client, rows) -> None:
    index = admin_client.get("/admin/").content.decode()
    assert "<title>Workbench | Virtual Staging</title>" in index
    assert 'site-name"><a href="/admin/">Virtual Staging</a>' in index and "Django administration" not in index

    row = rows[SLUG]
    url = f"{CHANGELIST}{row.pk}/change/"
    config = dict(row.active_version.config)
    saved = admin_client.post(
        url,
        {
            "config": json.dumps({**config, "output_quality": 70}),
            "comment": "tune",
            "base_version": "1",
            "_continue": 1,
        },
        follow=True,
    )
    assert [str(m) for m in saved.context["messages"]] == ["Saved v2 and made it active."]

    refused = admin_client.post(
        url, {"config": json.dumps({**config, "output_quality": 500}), "comment": "x", "base_version": "2"}
    ).content.decode()
    assert "Please correct the error below." in refused and "Please correct the errors below." not in refused

    back = admin_client.post(f"{CHANGELIST}{row.pk}/versions/1/activate/", {"base_version": "2"}, follow=True)
    shown = back.content.decode()
    assert f"Made v1 of {SLUG} active again." in shown and "V1 of" not in shown


@pytest.mark.parametrize("debug", [False, True])
def test_root_leads_somewhere_useful(client: Client, settings, debug: bool) -> None:
    settings.DEBUG = debug
    page = client.get("/")
    assert page.status_code == 200
    assert b'href="/admin/"' in page.content and b"Virtual staging" in page.content
