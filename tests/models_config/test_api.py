"""The config API: every endpoint, authentication, permissions, CSRF, 422/409/404 shapes, OpenAPI."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from api.models import ApiToken
from api.services import create_api_token
from models_config import services
from models_config.forms import ModelConfigForm
from models_config.models import ModelConfig, ModelConfigVersion
from tests.fixtures.config_rows import changed_config, forget_config_rows
from tests.fixtures.users import logged_in

from .conftest import SLUG

pytestmark = pytest.mark.django_db

BASE = "/api/v1/admin/models"


def defaults(slug: str = SLUG) -> dict:
    return services.get_spec(slug).default_config().model_dump(mode="json")


def put(client: Client, body: dict, slug: str = SLUG, **headers):
    return client.put(f"{BASE}/{slug}/config", json.dumps(body), content_type="application/json", headers=headers)


def versions(slug: str = SLUG) -> int:
    return ModelConfigVersion.objects.filter(model_config__slug=slug).count()


def test_list_models(rows, editor_client: Client) -> None:
    response = editor_client.get(f"{BASE}/")
    assert response.status_code == 200
    by_slug = {item["slug"]: item for item in response.json()}
    assert set(by_slug) == set(services.REGISTRY)
    assert by_slug[SLUG]["title"] == "Qwen Image Edit"
    assert by_slug[SLUG]["ref"] == "qwen/qwen-image-edit"
    assert by_slug[SLUG]["active_version"] == 1


def test_get_config(rows, viewer_client: Client) -> None:
    response = viewer_client.get(f"{BASE}/{SLUG}/config")
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == SLUG and body["version"] == 1 and body["source"] == "stored"
    assert body["config"] == defaults()
    assert body["comment"] == services.INITIAL_COMMENT and body["author"] is None and body["created_at"]


def test_get_config_without_stored_version_uses_defaults(viewer_client: Client) -> None:
    forget_config_rows()  # `migrate` stored a v1 for every model
    body = viewer_client.get(f"{BASE}/{SLUG}/config").json()
    assert (body["version"], body["source"], body["config"]) == (None, "defaults", defaults())


def test_put_creates_the_next_version(rows, editor, editor_client: Client) -> None:
    response = put(editor_client, {"config": {**defaults(), "output_quality": 70}, "comment": "api", "base_version": 1})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["version"], body["comment"], body["author"], body["config"]["output_quality"]) == (
        2,
        "api",
        "editor",
        70,
    )
    assert ModelConfig.objects.get(slug=SLUG).active_version.author == editor
    assert editor_client.get(f"{BASE}/{SLUG}/config").json()["version"] == 2


def test_invalid_put_is_422_in_ninjas_error_shape_and_stores_nothing(rows, editor_client: Client) -> None:
    config = {**defaults("seedream-4"), "max_images": 99, "width": 2048, "bogus": 1}
    response = put(editor_client, {"config": config, "comment": "bad", "base_version": 1}, slug="seedream-4")
    assert response.status_code == 422
    detail = response.json()["detail"]
    locs = {tuple(error["loc"]): error for error in detail}
    assert set(locs) == {("body", "config", "max_images"), ("body", "config", "width"), ("body", "config", "bogus")}
    assert all({"loc", "msg", "type"} <= set(error) for error in detail)
    assert locs[("body", "config", "bogus")]["type"] == "extra_forbidden"
    assert versions("seedream-4") == 1
    # ninja's own validation errors (a malformed body) have the same shape
    own = put(editor_client, {"config": "nope", "comment": "", "base_version": 1}).json()["detail"]
    assert all(error["loc"][0] == "body" and "msg" in error and "type" in error for error in own)
    assert versions() == 1


def test_stale_base_version_is_409_naming_the_active_version(rows, editor, editor_client: Client) -> None:
    services.save_version(SLUG, changed_config(SLUG), author=editor, comment="meanwhile")
    response = put(editor_client, {"config": defaults(), "comment": "late", "base_version": 1})
    assert response.status_code == 409
    body = response.json()
    assert body["active_version"] == 2 and body["active_author"] == "editor" and body["active_comment"] == "meanwhile"
    assert "now v2" in body["detail"] and "editor" in body["detail"]
    assert versions() == 2


def test_schema_endpoint_equals_the_admin_forms_schema(rows, viewer_client: Client) -> None:
    for slug, row in rows.items():
        response = viewer_client.get(f"{BASE}/{slug}/config/schema")
        assert response.status_code == 200
        assert response.json() == ModelConfigForm(instance=row).fields["config"].widget.get_schema()


def test_versions_and_activate(rows, editor, editor_client: Client) -> None:
    services.save_version(SLUG, {**defaults(), "go_fast": False}, author=editor, comment="v2")
    listed = editor_client.get(f"{BASE}/{SLUG}/config/versions").json()
    assert [(v["number"], v["active"], v["author"]) for v in listed] == [(2, True, "editor"), (1, False, None)]
    assert listed[0]["config"]["go_fast"] is False

    url = f"{BASE}/{SLUG}/config/versions/1/activate"
    stale = editor_client.post(url, {"base_version": 1}, content_type="application/json")
    assert stale.status_code == 409 and stale.json()["active_version"] == 2
    response = editor_client.post(url, {"base_version": 2}, content_type="application/json")
    assert response.status_code == 200 and response.json()["version"] == 1
    no_body = editor_client.generic("POST", f"{BASE}/{SLUG}/config/versions/2/activate")
    assert no_body.status_code == 200 and no_body.json()["version"] == 2
    assert editor_client.post(f"{BASE}/{SLUG}/config/versions/9/activate", {}, "application/json").status_code == 404
    assert versions() == 2


def test_unknown_slug_is_404_naming_known_slugs(rows, editor_client: Client) -> None:
    for method, url in [
        ("get", f"{BASE}/nope/config"),
        ("get", f"{BASE}/nope/config/schema"),
        ("get", f"{BASE}/nope/config/versions"),
        ("post", f"{BASE}/nope/config/versions/1/activate"),
    ]:
        response = editor_client.generic(method.upper(), url)
        assert response.status_code == 404, url
        assert "seedream-4" in response.json()["detail"] and "nope" in response.json()["detail"]
    assert put(editor_client, {"config": {}, "comment": "x", "base_version": 1}, slug="nope").status_code == 404


def test_anonymous_is_401(rows) -> None:
    client = Client()
    assert client.get(f"{BASE}/").status_code == 401
    assert client.get(f"{BASE}/{SLUG}/config").status_code == 401
    assert put(client, {"config": {}, "comment": "x", "base_version": 1}).status_code == 401
    assert client.generic("POST", f"{BASE}/{SLUG}/config/versions/1/activate").status_code == 401


def test_non_staff_and_staff_without_permission_are_403(rows, non_staff: User, staff_no_perm: User) -> None:
    for user in (non_staff, staff_no_perm):
        client = logged_in(user)
        assert client.get(f"{BASE}/{SLUG}/config").status_code == 403
        assert put(client, {"config": defaults(), "comment": "x", "base_version": 1}).status_code == 403
    assert versions() == 1


def test_view_permission_reads_but_cannot_write(rows, viewer_client: Client) -> None:
    assert viewer_client.get(f"{BASE}/{SLUG}/config/versions").status_code == 200
    assert put(viewer_client, {"config": defaults(), "comment": "x", "base_version": 1}).status_code == 403
    assert viewer_client.generic("POST", f"{BASE}/{SLUG}/config/versions/1/activate").status_code == 403
    assert versions() == 1


def test_bearer_token_auth(rows, editor) -> None:
    token, raw = create_api_token(editor, "script")
    client = Client(enforce_csrf_checks=True)  # tokens need no CSRF token
    response = put(
        client,
        {"config": changed_config(SLUG), "comment": "from a script", "base_version": 1},
        Authorization=f"Bearer {raw}",
    )
    assert response.status_code == 201, response.content
    assert response.json()["author"] == "editor"
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_bad_token_is_401_and_not_echoed(rows, editor) -> None:
    bad = "stg_not-a-real-token"
    for client in (Client(), logged_in(editor)):  # a bad token fails even beside a valid session
        for header in (f"Bearer {bad}", f"Token {bad}"):
            response = client.get(f"{BASE}/{SLUG}/config", headers={"Authorization": header})
            assert response.status_code == 401
            assert bad not in response.content.decode()


def test_token_of_inactive_user_is_401(rows, editor) -> None:
    _, raw = create_api_token(editor, "old")
    User.objects.filter(pk=editor.pk).update(is_active=False)
    assert Client().get(f"{BASE}/", headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    assert ApiToken.objects.get().last_used_at is None


def test_session_put_needs_csrf(rows, editor) -> None:
    client = logged_in(editor, enforce_csrf_checks=True)
    body = {"config": changed_config(SLUG), "comment": "x", "base_version": 1}
    response = put(client, body)
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert versions() == 1
    client.get("/admin/")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    assert put(client, body, **{"X-CSRFToken": csrf}).status_code == 201
    assert client.get(f"{BASE}/{SLUG}/config").status_code == 200  # safe methods need none


def test_openapi_document_and_docs_are_served() -> None:
    client = Client()
    document = client.get("/api/v1/openapi.json").json()
    assert document["info"]["title"] == "Virtual staging API"
    for path in (
        "/api/v1/admin/models/",
        "/api/v1/admin/models/{slug}/config",
        "/api/v1/admin/models/{slug}/config/schema",
        "/api/v1/admin/models/{slug}/config/versions",
        "/api/v1/admin/models/{slug}/config/versions/{number}/activate",
    ):
        assert path in document["paths"], path
    assert set(document["paths"]["/api/v1/admin/models/{slug}/config"]) == {"get", "put", "patch"}
    assert client.get("/api/v1/docs").status_code == 200


def patch(client: Client, body: dict, slug: str = SLUG):
    return client.patch(f"{BASE}/{slug}/config", json.dumps(body), content_type="application/json")


def test_patch_changes_only_the_keys_it_names(rows, editor_client: Client) -> None:
    put(
        editor_client,
        {"config": {**defaults(), "output_quality": 70, "go_fast": False}, "comment": "v2", "base_version": 1},
    )
    response = patch(editor_client, {"config": {"output_quality": 80}, "comment": "sharper", "base_version": 2})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"] == 3
    assert body["config"] == {**defaults(), "output_quality": 80, "go_fast": False}  # go_fast kept, not reset
    assert versions() == 3


def test_patch_null_returns_a_key_to_its_code_default(rows, editor_client: Client) -> None:
    put(editor_client, {"config": {**defaults(), "output_quality": 70}, "comment": "v2", "base_version": 1})
    response = patch(editor_client, {"config": {"output_quality": None}, "comment": "back", "base_version": 2})
    assert response.status_code == 201 and response.json()["config"] == defaults()


def test_patch_is_validated_and_conflict_checked_like_put(rows, editor_client: Client) -> None:
    bad = patch(editor_client, {"config": {"output_quality": 101}, "comment": "too much", "base_version": 1})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "config", "output_quality"]
    stale = patch(editor_client, {"config": {"output_quality": 50}, "comment": "late", "base_version": 7})
    assert stale.status_code == 409
    assert versions() == 1


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}
    patched = services.merge_patch(target, {"a": None, "b": {"c": None, "x": 4}, "e": [3], "f": "new"})
    assert patched == {"b": {"d": 3, "x": 4}, "e": [3], "f": "new"}
    assert target == {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}  # the input is not changed
