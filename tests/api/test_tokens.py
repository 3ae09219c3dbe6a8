"""API tokens: expiry, revocation (API and admin), scopes per area, and the secret shown nowhere after creation."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from api import services
from api.models import ApiToken, Scope
from tests.fixtures.users import JOB_PERMS, logged_in, make_staff

pytestmark = pytest.mark.django_db
JOBS = "/api/v1/jobs"
CONFIG = "/api/v1/admin/models/"
TOKENS = "/api/v1/tokens"


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def boss():
    """May read and change jobs and model configs: what a token can do is then up to its scopes."""
    return make_staff("boss", *JOB_PERMS, "view_modelconfig", "change_modelconfig")


def test_expired_token_is_401_saying_so(boss) -> None:
    expires = timezone.now() + timedelta(hours=1)
    _, raw = services.create_api_token(boss, "short", expires_at=expires)
    client = Client(headers=bearer(raw))
    assert client.get(JOBS).status_code == 200
    with time_machine.travel(expires + timedelta(seconds=1)):
        response = client.get(JOBS)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"] and raw not in response.content.decode()


def test_revoked_token_is_401_and_revoking_is_idempotent(boss) -> None:
    token, raw = services.create_api_token(boss, "ci")
    client = Client(headers=bearer(raw))
    response = client.delete(f"{TOKENS}/{token.pk}")  # a token may revoke itself, whatever its scopes
    assert response.status_code == 200 and response.json()["revoked_at"] is not None
    first = ApiToken.objects.get().revoked_at
    refused = client.get(JOBS)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert services.revoke_tokens(ApiToken.objects.all()) == 0 and ApiToken.objects.get().revoked_at == first


def test_tokens_api_lists_and_revokes_only_your_own(boss) -> None:
    other = make_staff("other")
    theirs, _ = services.create_api_token(other, "theirs")
    mine, raw = services.create_api_token(boss, "mine", scopes=[Scope.JOBS_READ])
    client = Client(headers=bearer(raw))
    listed = client.get(TOKENS).json()
    assert [(token["id"], token["scopes"]) for token in listed] == [(mine.pk, ["jobs:read"])]
    assert raw not in client.get(TOKENS).content.decode() and mine.token_hash not in str(listed)
    assert client.delete(f"{TOKENS}/{theirs.pk}").json() == {"detail": f"No API token {theirs.pk}."}
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None
    root = make_staff("root", is_superuser=True)
    assert logged_in(root).delete(f"{TOKENS}/{theirs.pk}").status_code == 200  # a superuser manages all


@pytest.mark.parametrize(
    ("scopes", "allowed", "refused"),
    [
        (
            [Scope.JOBS_READ],
            [("get", JOBS)],
            [("post", f"{JOBS}/1/cancel", "jobs:write"), ("get", CONFIG, "config:read")],
        ),
        ([Scope.JOBS_WRITE], [("post", f"{JOBS}/1/cancel")], [("get", JOBS, "jobs:read")]),
        ([Scope.CONFIG_READ], [("get", CONFIG)], [("get", JOBS, "jobs:read")]),
        (
            [Scope.CONFIG_WRITE],
            [("put", f"{CONFIG}seedream-4/config")],
            [("get", CONFIG, "config:read"), ("post", f"{JOBS}/1/cancel", "jobs:write")],
        ),
    ],
)
def test_a_token_is_held_to_its_scopes(boss, scopes, allowed, refused) -> None:
    _, raw = services.create_api_token(boss, "narrow", scopes=scopes)
    client = Client(headers=bearer(raw))
    for method, path in allowed:
        status = getattr(client, method)(path, content_type="application/json").status_code
        assert status not in (401, 403), (method, path, status)  # past the scope check (404/422 are the endpoint's)
    for method, path, scope in refused:
        response = getattr(client, method)(path, content_type="application/json")
        assert response.status_code == 403, (method, path)
        assert response.json() == {"detail": f"This API token lacks the scope {scope}."}


def test_a_session_is_not_limited_by_scopes(boss) -> None:
    services.create_api_token(boss, "narrow", scopes=[Scope.JOBS_READ])
    client = logged_in(boss)
    assert client.get(CONFIG).status_code == 200
    assert client.post(f"{JOBS}/999/cancel").status_code == 404


def test_unknown_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match="jobs:delete"):
        services.create_api_token(make_staff("x"), "bad", scopes=["jobs:delete"])
    assert not ApiToken.objects.exists()


def test_admin_creates_a_scoped_expiring_token_and_revokes_it(settings) -> None:
    editor = make_staff("editor", "api.add_apitoken", "api.view_apitoken", *JOB_PERMS)
    client = logged_in(editor)
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = client.post(
        "/admin/api/apitoken/add/",
        {"name": "reader", "scopes": ["jobs:read"], "expires_at_0": expires.date(), "expires_at_1": expires.time()},
        follow=True,
    )
    assert response.status_code == 200
    token = ApiToken.objects.get()
    assert (token.scopes, token.expires_at) == (["jobs:read"], expires)
    page = client.get(f"/admin/api/apitoken/{token.pk}/change/").content.decode()
    assert token.token_hash not in page
    response = client.post("/admin/api/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True)
    assert "1 token(s) revoked." in response.content.decode()
    assert ApiToken.objects.get().revoked_at is not None


def test_no_scope_ticked_is_refused_in_the_admin() -> None:
    client = logged_in(make_staff("editor", "api.add_apitoken", "api.view_apitoken"))
    response = client.post("/admin/api/apitoken/add/", {"name": "none"})
    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_bad_token_is_never_echoed_or_logged(caplog, settings) -> None:
    settings.DEBUG = True  # ninja's own bearer class would log the header in DEBUG
    raw = ApiToken.generate()
    with caplog.at_level(logging.DEBUG):
        response = Client().get(JOBS, headers=bearer(raw))
        Client().get(JOBS, headers={"Authorization": f"Token {raw}"})
    assert response.status_code == 401 and raw not in response.content.decode()
    assert raw not in caplog.text


def test_the_log_filter_redacts_api_tokens() -> None:
    from stagingsite.log_filters import RedactTokens

    raw = ApiToken.generate()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "curl -H 'Authorization: Bearer %s'", (raw,), None)
    assert RedactTokens().filter(record) and raw not in record.getMessage()
    assert "Bearer stg_[redacted]" in record.getMessage()
