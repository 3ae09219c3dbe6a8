"""The API token admin: each user makes their own tokens; the raw token is shown once, then never again."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from api.models import ApiToken, Scope
from tests.fixtures.users import logged_in

pytestmark = pytest.mark.django_db

TOKENS = "/admin/api/apitoken/"
NEW_TOKEN = {"name": "ci", "scopes": Scope.values}  # what the add form posts with every scope ticked (its initial)


@pytest.fixture
def editor(make_user):
    return make_user("editor", "api.add_apitoken", "api.view_apitoken")


@pytest.fixture
def editor_client(editor) -> Client:
    return logged_in(editor)


def test_api_token_admin_shows_the_raw_token_once(editor, editor_client: Client) -> None:
    response = editor_client.post(f"{TOKENS}add/", NEW_TOKEN, follow=True)
    assert response.status_code == 200
    token = ApiToken.objects.get()
    html = response.content.decode()
    raw = re.search(r"<code id='new-api-token'>([^<]+)</code>", html).group(1)
    assert raw.startswith(ApiToken.PREFIX)
    assert token.user == editor and token.name == "ci"
    assert token.token_hash == ApiToken.hash(raw) and raw not in token.token_hash
    for url in (TOKENS, f"{TOKENS}{token.pk}/change/"):
        page = editor_client.get(url).content.decode()
        assert raw not in page and token.token_hash not in page


def test_staff_see_only_their_own_tokens_superusers_all(make_user, token_for) -> None:
    mine, theirs = make_user("mine", "api.view_apitoken"), make_user("theirs", "api.view_apitoken")
    token_for(mine)
    token_for(theirs)
    listed = logged_in(mine).get(TOKENS).context["cl"].result_list
    assert [token.user for token in listed] == [mine]
    root = make_user("root", is_superuser=True)
    assert logged_in(root).get(TOKENS).context["cl"].result_count == 2


def test_a_token_made_in_the_admin_authenticates(editor, editor_client: Client) -> None:
    html = editor_client.post(f"{TOKENS}add/", NEW_TOKEN, follow=True).content.decode()
    raw = re.search(r"<code id='new-api-token'>([^<]+)</code>", html).group(1)
    response = Client().post("/api/v1/jobs/1/reprocess", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 403  # authenticated (not 401); the editor may not reprocess jobs
    assert "staging.change_stagingjob" in response.json()["detail"]
