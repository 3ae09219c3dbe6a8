"""Authentication and permissions (`api.auth`), on a probe operation so no app's own rules interfere.

Token: `Authorization: Bearer stg_…`, no CSRF. Session: the admin's cookie, CSRF on unsafe methods.
Nobody → 401; somebody who is not staff or lacks every permission named → 403.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from api.models import ApiToken
from tests.fixtures.users import logged_in

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.urls")]

URL = "/probe/whoami"
VIEW = "models_config.view_modelconfig"


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def test_a_token_authenticates_without_csrf_and_records_its_use(make_user, token_for) -> None:
    user = make_user("scripted", VIEW)
    raw = token_for(user)
    assert raw.startswith(ApiToken.PREFIX)
    assert ApiToken.objects.get().last_used_at is None
    client = Client(enforce_csrf_checks=True)
    for method in ("get", "post"):
        response = getattr(client, method)(URL, headers=bearer(raw))
        assert response.status_code == 200, response.content
        assert response.json() == {"user": "scripted", "request_user": "scripted"}
    assert ApiToken.objects.get().last_used_at is not None


def test_only_the_hash_of_a_token_is_stored(make_user, token_for) -> None:
    raw = token_for(make_user("hashed", VIEW))
    row = ApiToken.objects.get()
    assert row.token_hash == ApiToken.hash(raw) and raw not in row.token_hash
    assert ApiToken._meta.db_table == "models_config_apitoken"  # moved app, kept its table


@pytest.mark.parametrize("header", ["Bearer stg_not-a-real-token", "Token stg_not-a-real-token", "Bearer ", "Basic"])
def test_a_bad_or_foreign_credential_is_401_and_never_echoed(make_user, header) -> None:
    user = make_user("editor", VIEW)
    for client in (Client(), logged_in(user)):  # a bad token fails even beside a valid session
        response = client.get(URL, headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json() == {"detail": "Unauthorized"}
        assert "not-a-real-token" not in response.content.decode()


def test_the_token_of_an_inactive_user_is_401_and_not_marked_used(make_user, token_for) -> None:
    user = make_user("gone", VIEW)
    raw = token_for(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert Client().get(URL, headers=bearer(raw)).status_code == 401
    assert ApiToken.objects.get().last_used_at is None


def test_anonymous_is_401() -> None:
    client = Client(enforce_csrf_checks=True)
    for method in ("get", "post"):
        response = getattr(client, method)(URL)
        assert response.status_code == 401 and response.json() == {"detail": "Unauthorized"}


def test_a_session_reads_freely_but_writes_only_with_the_csrf_token(make_user) -> None:
    client = logged_in(make_user("browser", VIEW), enforce_csrf_checks=True)
    assert client.get(URL).json()["user"] == "browser"  # safe methods need no CSRF token
    refused = client.post(URL)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    client.get("/admin/")  # sets the csrftoken cookie, as every admin page does
    allowed = client.post(URL, headers={"X-CSRFToken": client.cookies["csrftoken"].value})
    assert allowed.status_code == 200 and allowed.json()["user"] == "browser"


def test_an_inactive_users_session_is_401(make_user) -> None:
    client = logged_in(make_user("left", VIEW))
    User.objects.filter(username="left").update(is_active=False)
    assert client.get(URL).status_code == 401


@pytest.mark.parametrize(
    ("perms", "is_staff", "status", "message"),
    [
        ((VIEW,), False, 403, "Staff only."),
        ((), True, 403, "Missing permission: models_config.view_modelconfig or models_config.change_modelconfig."),
        (("models_config.change_modelconfig",), True, 200, None),  # any one of the permissions named
        ((VIEW,), True, 200, None),
    ],
)
def test_require_perm_wants_staff_and_any_one_permission(
    make_user, token_for, perms, is_staff, status, message
) -> None:
    user = make_user("someone", *perms, is_staff=is_staff)
    for client, headers in ((logged_in(user), {}), (Client(), bearer(token_for(user)))):
        response = client.get(URL, headers=headers)
        assert response.status_code == status
        if message:
            assert response.json() == {"detail": message}


def test_a_superuser_needs_no_explicit_permission(token_for) -> None:
    root = User.objects.create_superuser("root", password="pw")
    assert Client().get(URL, headers=bearer(token_for(root))).json()["user"] == "root"
