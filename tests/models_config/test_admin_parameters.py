"""The config admin's own views with parameters they cannot use: a clear 404 or an admin message, never a 500.

A version number arrives as text (`?version=`, `?a=`/`?b=`, a posted `base_version`); only ASCII digits
are one. `int()` alone raises on "²" (a 500) and reads "٣" as 3, so each class is tried, in DEBUG too,
and each refusal must leave the versions and the active pointer as they were.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from models_config import services
from models_config.admin import version_number
from models_config.models import ModelConfig, ModelConfigVersion
from tests.fixtures.config_rows import changed_config

from .conftest import SLUG

pytestmark = pytest.mark.django_db

NOT_NUMBERS = ["abc", "²", "٣", "-1", "1.0", " ", "1e3", "0x1"]


def url(row: ModelConfig, suffix: str) -> str:
    return f"/admin/models_config/modelconfig/{row.pk}/{suffix}"


def snapshot() -> tuple[list[tuple[str, int]], dict[str, int | None]]:
    versions = sorted(ModelConfigVersion.objects.values_list("model_config__slug", "number"))
    active = {
        row.slug: row.active_version.number if row.active_version_id else None for row in ModelConfig.objects.all()
    }
    return versions, active


@pytest.fixture
def client_in_debug(rows, editor, settings) -> Client:
    """The editor's client; DEBUG on, where a 500 would be a traceback page, and errors come back as answers."""
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(editor)
    services.save_version(SLUG, {}, author=editor, comment="v2")
    return client


@pytest.mark.parametrize("raw", [*NOT_NUMBERS, "", None])
def test_only_ascii_digits_are_a_version_number(raw) -> None:
    assert version_number(raw) is None


def test_a_version_number_may_be_padded_by_spaces_as_forms_send_it() -> None:
    assert (version_number("3"), version_number(" 12 "), version_number("007")) == (3, 12, 7)


@pytest.mark.parametrize("raw", [value for value in NOT_NUMBERS if value.strip()])
def test_preview_of_a_version_that_is_not_a_number_is_404(rows, client_in_debug: Client, raw: str) -> None:
    response = client_in_debug.get(url(rows[SLUG], "preview/"), {"version": raw})
    assert response.status_code == 404
    assert "?version=N" in response.content.decode()


def test_preview_of_a_number_too_large_for_the_column_is_404(rows, client_in_debug: Client) -> None:
    response = client_in_debug.get(url(rows[SLUG], "preview/"), {"version": "9" * 30})
    assert response.status_code == 404


def test_preview_still_reads_a_version_by_its_number(rows, client_in_debug: Client) -> None:
    response = client_in_debug.get(url(rows[SLUG], "preview/"), {"version": "1"})
    assert (response.status_code, response.context["source"]) == (200, "v1")


@pytest.mark.parametrize("query", [{"a": "²"}, {"a": "٣"}, {"a": "1", "b": "abc"}, {"b": "1"}])
def test_diff_with_versions_that_are_not_numbers_is_404(rows, client_in_debug: Client, query) -> None:
    response = client_in_debug.get(url(rows[SLUG], "diff/"), query)
    assert response.status_code == 404
    assert "?a=N" in response.content.decode()


@pytest.mark.parametrize("raw", [value for value in NOT_NUMBERS if value.strip()])
@pytest.mark.parametrize("action", ["versions/1/activate/", "reset/"])
def test_a_posted_base_version_that_is_not_a_number_is_an_admin_message(
    rows, client_in_debug: Client, action: str, raw: str
) -> None:
    before = snapshot()
    response = client_in_debug.post(url(rows[SLUG], action), {"base_version": raw})
    assert (response.status_code, response["Location"]) == (302, url(rows[SLUG], "change/"))
    [message] = list(get_messages(response.wsgi_request))
    assert message.level_tag == "error"
    assert "base_version is not a version number" in message.message
    assert snapshot() == before  # nothing activated, no version stored


@pytest.mark.parametrize("action", ["versions/1/activate/", "reset/"])
def test_a_blank_base_version_means_no_check_as_before(rows, client_in_debug: Client, action: str) -> None:
    services.save_version(SLUG, changed_config(SLUG), author=None, comment="a change to activate away or reset")
    response = client_in_debug.post(url(rows[SLUG], action), {"base_version": ""})
    assert response.status_code == 302
    [message] = list(get_messages(response.wsgi_request))
    assert message.level_tag == "success"
