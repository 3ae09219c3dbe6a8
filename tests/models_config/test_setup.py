"""`migrate` alone stores a v1 of the code defaults for every registered model; no GET writes anything."""

from __future__ import annotations

import dataclasses
import re
from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from models_config import services
from models_config.management import create_config_rows
from models_config.models import ConfigEvent, ModelConfig, ModelConfigVersion
from models_config.registry import REGISTRY
from tests.fixtures.config_rows import forget_config_rows
from tests.fixtures.users import logged_in

from .conftest import SLUG

pytestmark = pytest.mark.django_db

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def migrate() -> str:
    out = StringIO()
    call_command("migrate", interactive=False, verbosity=1, stdout=out)
    return out.getvalue()


def stored() -> dict[str, list[tuple]]:
    """Every config row with its versions, as comparable values."""
    return {
        row.slug: [
            (v.pk, v.number, v.config, v.author_id, v.comment, row.active_version_id == v.pk)
            for v in row.versions.order_by("number")
        ]
        for row in ModelConfig.objects.all()
    }


def writes(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if WRITE.match(query["sql"])]


def assert_v1_of_defaults_for_every_model() -> None:
    assert set(ModelConfig.objects.values_list("slug", flat=True)) == set(REGISTRY)
    for slug, spec in REGISTRY.items():
        active = ModelConfig.objects.get(slug=slug).active_version
        assert (active.number, active.author, active.comment) == (1, None, services.INITIAL_COMMENT)
        assert active.config == spec.default_config().model_dump(mode="json")


def test_the_migrated_test_database_has_a_v1_of_code_defaults_for_every_model():
    assert_v1_of_defaults_for_every_model()


def test_migrate_alone_creates_the_rows_and_says_so():
    forget_config_rows()
    output = migrate()
    assert_v1_of_defaults_for_every_model()
    assert f"Config rows created with code defaults (v1): {', '.join(REGISTRY)}" in output


def test_migrating_twice_changes_nothing():
    before = stored()
    with CaptureQueriesContext(connection) as queries:
        output = migrate()
    assert stored() == before
    assert not [sql for sql in writes(queries) if "models_config" in sql]
    assert "Config rows created" not in output


def test_a_model_without_a_row_gets_one_on_the_next_migrate_and_the_others_keep_their_history():
    editor = User.objects.create_user("editor")
    services.save_version(SLUG, {"output_quality": 70}, author=editor, comment="tuned")
    ModelConfig.objects.filter(slug="seedream-4").update(active_version=None)
    ConfigEvent.objects.filter(model_config__slug="seedream-4").delete()
    ModelConfigVersion.objects.filter(model_config__slug="seedream-4").delete()
    ModelConfig.objects.filter(slug="seedream-4").delete()
    migrate()
    assert ModelConfig.objects.get(slug="seedream-4").active_version.number == 1
    assert ModelConfig.objects.get(slug=SLUG).active_version.number == 2
    assert ModelConfigVersion.objects.filter(model_config__slug=SLUG).count() == 2


def test_a_new_registry_line_gets_its_row_on_the_next_migrate(monkeypatch):
    spec = dataclasses.replace(REGISTRY["flux-kontext-pro"], slug="flux-kontext-next", title="FLUX next")
    monkeypatch.setitem(REGISTRY, spec.slug, spec)
    assert not ModelConfig.objects.filter(slug=spec.slug).exists()
    migrate()
    active = ModelConfig.objects.get(slug=spec.slug).active_version
    assert active.number == 1 and active.config == spec.default_config().model_dump(mode="json")


def test_the_receiver_leaves_other_apps_and_databases_it_may_not_migrate_alone(settings):
    forget_config_rows()
    create_config_rows(apps.get_app_config("staging"), verbosity=0)
    assert not ModelConfig.objects.exists()
    settings.DATABASE_ROUTERS = [f"{__name__}.NoConfigMigrations"]
    create_config_rows(apps.get_app_config("models_config"), verbosity=0)
    assert not ModelConfig.objects.exists()
    settings.DATABASE_ROUTERS = []
    create_config_rows(apps.get_app_config("models_config"), verbosity=0)
    assert ModelConfig.objects.count() == len(REGISTRY)


class NoConfigMigrations:
    def allow_migrate(self, db, app_label, **hints):
        return app_label != "models_config"


# --- No GET writes -------------------------------------------------------------------------------


@pytest.fixture
def superuser_client() -> Client:
    """Logged in before anything is captured: a login writes its session, a page view must not."""
    return logged_in(User.objects.create_superuser("root", password="pw"))


def _admin_pages(row: ModelConfig) -> list[str]:
    base = f"/admin/models_config/modelconfig/{row.pk}/"
    return [
        "/admin/models_config/modelconfig/",
        f"{base}change/",
        f"{base}history/",
        f"{base}preview/",
        f"{base}preview/?version=1",
        f"{base}diff/?a=1&b=2",
        f"{base}diff/?a=1",
    ]


def _api_pages() -> list[str]:
    base = "/api/v1/admin/models"
    return [f"{base}/", f"{base}/{SLUG}/config", f"{base}/{SLUG}/config/schema", f"{base}/{SLUG}/config/versions"]


def test_no_admin_or_config_api_get_writes(superuser_client: Client):
    root = User.objects.get(username="root")
    services.save_version(SLUG, {"output_quality": 70}, author=root, comment="a second version to diff")
    row = ModelConfig.objects.get(slug=SLUG)
    before = stored()
    for url in [*_admin_pages(row), *_api_pages()]:
        with CaptureQueriesContext(connection) as queries:
            response = superuser_client.get(url, follow=True)  # "History" leads to the change page's history
        assert response.status_code == 200, (url, response.status_code)
        assert writes(queries) == [], url
    assert stored() == before


def test_with_nothing_stored_the_admin_list_and_the_api_read_and_write_nothing(superuser_client: Client):
    forget_config_rows()
    for url in ["/admin/models_config/modelconfig/", *_api_pages()]:
        with CaptureQueriesContext(connection) as queries:
            response = superuser_client.get(url)
        assert response.status_code == 200, url
        assert writes(queries) == [], url
    assert not ModelConfig.objects.exists()  # the fix is `migrate`, not a page view
    body = superuser_client.get(f"/api/v1/admin/models/{SLUG}/config").json()
    assert (body["version"], body["source"]) == (None, "defaults")
