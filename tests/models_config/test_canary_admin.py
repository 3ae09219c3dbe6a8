"""The config page's canary section, its one history and its metrics table (the browser test is in
test_admin_browser.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client

from models_config import hooks, services
from models_config.models import ConfigEvent, ModelConfig
from staging.metrics import by_version
from tests.fixtures.config_rows import changed_config
from tests.fixtures.users import logged_in

from .conftest import SLUG

CHANGELIST = "/admin/models_config/modelconfig/"


def url(row: ModelConfig, suffix: str = "change/") -> str:
    return f"{CHANGELIST}{row.pk}/{suffix}"


def current() -> ModelConfig:
    return ModelConfig.objects.select_related("candidate_version", "active_version").get(slug=SLUG)


def last_message(response) -> tuple[str, str]:
    message = list(get_messages(response.wsgi_request))[-1]
    return message.level_tag, message.message


@pytest.fixture
def v2(rows, editor: User) -> ModelConfig:
    services.save_version(SLUG, changed_config(SLUG, "v2"), author=editor, comment="warmer light")
    return current()


@pytest.mark.django_db
def test_start_promote_and_stop_from_the_page(v2: ModelConfig, editor_client: Client) -> None:
    page = editor_client.get(url(v2)).content.decode()
    assert 'id="canary-start"' in page and "No canary" in page and 'name="csrfmiddlewaretoken"' in page

    response = editor_client.post(
        url(v2, "canary/start/"), {"canary_version": "1", "canary_share": "0.25", "canary_comment": "try v1"}
    )
    assert response.status_code == 302 and response["Location"].endswith("#canary")
    assert last_message(response) == ("success", "Canary started: v1 takes 0.250 of the new jobs.")
    assert (current().candidate_version.number, current().canary_share) == (1, Decimal("0.250"))
    page = editor_client.get(url(v2)).content.decode()
    assert "v1 (candidate) takes 0.250 of the new jobs" in page and 'id="canary-promote"' in page
    assert "v1 on 25.0% of new jobs" in editor_client.get(CHANGELIST).content.decode()  # seen in the list too

    response = editor_client.post(url(v2, "canary/stop/"), {"canary_comment": "not now"})
    assert last_message(response)[0] == "success" and current().candidate_version is None

    editor_client.post(url(v2, "canary/start/"), {"canary_version": "1", "canary_share": "1", "canary_comment": "all"})
    response = editor_client.post(url(v2, "canary/promote/"), {"canary_comment": "v1 it is"})
    assert last_message(response) == ("success", "v1 is the active version now; the canary has ended.")
    assert (current().active_version.number, current().candidate_version) == (1, None)
    kinds = list(ConfigEvent.objects.filter(model_config=v2).values_list("kind", "actor__username", "comment"))
    assert kinds[:4] == [
        ("canary_promote", "editor", "v1 it is"),
        ("canary_start", "editor", "all"),
        ("canary_stop", "editor", "not now"),
        ("canary_start", "editor", "try v1"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("suffix", "data", "says"),
    [
        ("canary/start/", {"canary_version": "1", "canary_share": "1.5", "canary_comment": "x"}, "at most 1"),
        ("canary/start/", {"canary_version": "2", "canary_share": "0.5", "canary_comment": "x"}, "active version"),
        ("canary/start/", {"canary_version": "", "canary_share": "0.5", "canary_comment": "x"}, "Choose the"),
        ("canary/start/", {"canary_version": "1", "canary_share": "0.5", "canary_comment": ""}, "Say what changed"),
        ("canary/promote/", {"canary_comment": "x"}, "runs no canary"),
        ("canary/stop/", {"canary_comment": "x"}, "runs no canary"),
    ],
)
def test_a_refused_canary_action_is_a_message_and_changes_nothing(v2, editor_client, suffix, data, says) -> None:
    events = ConfigEvent.objects.count()
    response = editor_client.post(url(v2, suffix), data)
    assert response.status_code == 302
    level, message = last_message(response)
    assert level == "error" and says in message
    assert ConfigEvent.objects.count() == events and current().candidate_version is None


@pytest.mark.django_db
def test_viewers_see_the_canary_but_may_not_act(v2: ModelConfig, viewer: User, editor_client: Client) -> None:
    editor_client.post(url(v2, "canary/start/"), {"canary_version": "1", "canary_share": "0.5", "canary_comment": "x"})
    as_viewer = logged_in(viewer)
    page = as_viewer.get(url(v2)).content.decode()
    assert "v1 (candidate) takes 0.500" in page and 'id="canary-start"' not in page
    for suffix in ("canary/start/", "canary/promote/", "canary/stop/"):
        assert as_viewer.post(url(v2, suffix), {"canary_comment": "x"}).status_code == 403
    assert editor_client.get(url(v2, "canary/promote/")).status_code == 405
    assert current().candidate_version.number == 1


@pytest.mark.django_db
def test_one_history_and_the_history_button_leads_to_it(v2: ModelConfig, editor: User, editor_client) -> None:
    services.activate_version(SLUG, 1, actor=editor, comment="back to v1")
    response = editor_client.get(url(v2, "history/"))
    assert (response.status_code, response["Location"]) == (302, url(v2) + "#config-history")
    page = editor_client.get(url(v2)).content.decode()
    history = page[page.index('id="config-history"') : page.index("</table>", page.index('id="config-history"'))]
    assert history.count("<tr class=") == 3  # the initial save, the save of v2, the activation of v1
    assert 'data-kind="activate" data-version="1"' in history and "back to v1" in history
    assert 'data-kind="save" data-version="2"' in history and "warmer light" in history


@pytest.mark.django_db
def test_the_metrics_table_shows_each_version_per_arm(v2: ModelConfig, editor_client, monkeypatch) -> None:
    from tests.staging.test_metrics import attempt

    monkeypatch.setattr(hooks, "_metrics_reader", by_version)  # what staging's AppConfig.ready() registered
    assert hooks.version_metrics(SLUG) == []
    attempt("succeeded", number_of_version=2, predict=2.0, e2e=5.0, cost="0.03", slug=SLUG)
    attempt("succeeded", number_of_version=1, predict=3.0, e2e=6.0, cost="0.03", slug=SLUG, arm="candidate")
    attempt("failed", number_of_version=1, error_class="permanent", slug=SLUG, arm="active")
    page = editor_client.get(url(v2)).content.decode()
    table = page[page.index('id="config-metrics"') : page.index("</table>", page.index('id="config-metrics"'))]
    assert table.index('data-version="2" data-arm="active"') < table.index('data-version="1" data-arm="active"')
    assert table.index('data-version="1" data-arm="active"') < table.index('data-version="1" data-arm="candidate"')
    assert "?a=1&amp;b=2" in table  # v2 compared with v1


def test_the_metrics_hook_is_registered_by_staging() -> None:
    assert hooks._metrics_reader is by_version


@pytest.mark.django_db
def test_with_one_version_the_page_says_why_no_canary_can_start(rows, editor_client: Client) -> None:
    page = editor_client.get(url(current())).content.decode()
    assert 'id="canary-none"' in page and "Save another version first" in page
    assert 'id="canary-start"' not in page  # no form with an empty candidate list
