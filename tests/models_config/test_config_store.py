"""Stored versions, the cached `get_active_config`, and its fallback to the code defaults."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import DatabaseError, connection

from models_config import selectors, services
from models_config.models import ModelConfig, ModelConfigVersion
from models_config.registry import REGISTRY, get_spec
from tests.fixtures.config_rows import forget_config_rows
from tests.fixtures.users import make_staff

pytestmark = pytest.mark.django_db
SLUG = "flux-kontext-pro"


@pytest.fixture
def staff(db):
    return make_staff("editor")


def _corrupt_active_version(slug: str, raw_json: str) -> None:
    """Write JSON behind the ORM's back, as a bad migration or a manual fix might."""
    version = ModelConfig.objects.get(slug=slug).active_version
    table = ModelConfigVersion._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET config = %s WHERE id = %s", [raw_json, version.pk])


def test_ensure_config_rows_gives_every_model_a_first_version_once():
    forget_config_rows()  # `migrate` created them for the test database
    assert services.ensure_config_rows() == list(REGISTRY)
    assert services.ensure_config_rows() == []
    for slug, spec in REGISTRY.items():
        active = ModelConfig.objects.get(slug=slug).active_version
        assert active.number == 1
        assert active.config == spec.default_config().model_dump(mode="json")


def test_save_version_creates_the_next_number_and_activates_it(staff):
    services.ensure_config_rows()
    version = services.save_version(SLUG, {"safety_tolerance": 1}, author=staff, comment="Stricter")
    assert (version.number, version.author, version.comment) == (2, staff, "Stricter")
    assert version.config["safety_tolerance"] == 1
    assert version.config["output_format"] == "png"  # normalised: defaults filled in
    assert ModelConfig.objects.get(slug=SLUG).active_version == version
    active = selectors.get_active_config(SLUG)
    assert (active.version_number, active.source, active.config.safety_tolerance) == (2, "stored", 1)


def test_invalid_config_or_missing_comment_stores_nothing(staff):
    services.ensure_config_rows()
    with pytest.raises(services.ConfigValidationError) as info:
        services.save_version(SLUG, {"safety_tolerance": 4}, author=staff, comment="Too lax")
    assert info.value.errors[0]["loc"] == ["safety_tolerance"]
    with pytest.raises(services.ConfigValidationError, match="comment"):
        services.save_version(SLUG, {}, author=staff, comment="   ")
    assert ModelConfigVersion.objects.filter(model_config__slug=SLUG).count() == 1


def test_stale_base_version_is_a_conflict(staff):
    services.ensure_config_rows()
    services.save_version(SLUG, {"seed": 1}, author=staff, comment="a", base_version=1, check_base=True)
    with pytest.raises(services.VersionConflictError, match="v2"):
        services.save_version(SLUG, {"seed": 2}, author=staff, comment="b", base_version=1, check_base=True)
    assert ModelConfig.objects.get(slug=SLUG).active_version.config["seed"] == 1


def test_rollback_activates_an_old_version_without_copying(staff):
    services.ensure_config_rows()
    services.save_version(SLUG, {"seed": 5}, author=staff, comment="seeded")
    services.activate_version(SLUG, 1)
    assert selectors.get_active_config(SLUG).version_number == 1
    assert ModelConfigVersion.objects.filter(model_config__slug=SLUG).count() == 2
    with pytest.raises(services.ConfigError, match="no version 9"):
        services.activate_version(SLUG, 9)


def test_reset_to_defaults_is_a_new_version(staff):
    services.ensure_config_rows()
    services.save_version(SLUG, {"prompt_upsampling": True}, author=staff, comment="upsample")
    saved = services.reset_to_defaults(SLUG, author=staff)
    version = saved.version
    assert saved.created and version.number == 3
    assert version.config == get_spec(SLUG).default_config().model_dump(mode="json")


def test_versions_are_immutable(staff):
    services.ensure_config_rows()
    version = ModelConfig.objects.get(slug=SLUG).active_version
    version.comment = "rewritten history"
    with pytest.raises(Exception, match="immutable"):
        version.save()
    with pytest.raises(Exception, match="cannot be deleted"):
        version.delete()


def test_a_version_that_no_longer_validates_cannot_be_activated(staff):
    services.ensure_config_rows()
    _corrupt_active_version(SLUG, json.dumps({"safety_tolerance": 99}))
    services.save_version(SLUG, {}, author=staff, comment="fresh")
    with pytest.raises(services.ConfigValidationError):
        services.activate_version(SLUG, 1)
    assert selectors.get_active_config(SLUG).version_number == 2


def test_diff_lists_changed_fields_only():
    old = get_spec(SLUG).default_config().model_dump(mode="json")
    new = {**old, "seed": 3, "aspect_ratio": "16:9"}
    changes = selectors.diff_configs(old, new)
    assert [(c.key, c.old, c.new) for c in changes] == [
        ("aspect_ratio", "match_input_image", "16:9"),
        ("seed", None, 3),
    ]


# --- fallback ------------------------------------------------------------------------------------


def test_no_row_falls_back_to_defaults_with_a_warning(caplog):
    forget_config_rows()
    caplog.set_level(logging.WARNING, logger="models_config.selectors")
    active = selectors.get_active_config(SLUG)
    assert active.source == "defaults" and active.version_id is None
    assert active.config == get_spec(SLUG).default_config()
    assert SLUG in caplog.text and "no stored configuration" in caplog.text


def test_corrupt_stored_json_falls_back_to_defaults_with_a_warning(caplog):
    services.ensure_config_rows()
    _corrupt_active_version(SLUG, json.dumps({"output_format": "webp", "safety_tolerance": 2}))
    caplog.set_level(logging.WARNING, logger="models_config.selectors")
    active = selectors.get_active_config(SLUG)
    assert active.source == "defaults"
    assert active.config.output_format == "png"
    assert SLUG in caplog.text and "no longer validates" in caplog.text and "output_format" in caplog.text


def test_database_error_falls_back_to_defaults_with_a_warning(caplog):
    services.ensure_config_rows()
    caplog.set_level(logging.WARNING, logger="models_config.selectors")

    def broken(execute, sql, params, many, context):
        raise DatabaseError("server closed the connection unexpectedly")

    with connection.execute_wrapper(broken):
        active = selectors.get_active_config(SLUG)
    assert active.source == "defaults"
    assert SLUG in caplog.text and "database error" in caplog.text


def test_database_error_keeps_a_cached_good_config(staff, settings):
    settings.MODELS_CONFIG_CACHE_SECONDS = 0
    services.ensure_config_rows()
    services.save_version(SLUG, {"seed": 11}, author=staff, comment="seeded")
    assert selectors.get_active_config(SLUG).config.seed == 11

    def broken(execute, sql, params, many, context):
        raise DatabaseError("connection refused")

    with connection.execute_wrapper(broken):
        assert selectors.get_active_config(SLUG).config.seed == 11


# --- cache ---------------------------------------------------------------------------------------


def test_steady_state_read_runs_no_query(django_assert_num_queries):
    services.ensure_config_rows()
    selectors.get_active_config(SLUG)
    with django_assert_num_queries(0):
        for _ in range(100):
            selectors.get_active_config(SLUG)


def test_a_save_in_this_process_is_seen_at_once(staff, django_capture_on_commit_callbacks):
    services.ensure_config_rows()
    assert selectors.get_active_config(SLUG).version_number == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.save_version(SLUG, {"seed": 2}, author=staff, comment="now")
    assert selectors.get_active_config(SLUG).version_number == 2


@pytest.mark.django_db(transaction=True)
def test_an_activation_in_another_process_is_seen_within_a_second(subprocess_env, staff, monkeypatch):
    clock = SimpleNamespace(now=time.monotonic())  # the cache's clock: it moves only when this test says so
    monkeypatch.setattr(selectors, "time", SimpleNamespace(monotonic=lambda: clock.now))
    services.ensure_config_rows()
    services.save_version(SLUG, {"seed": 2}, author=staff, comment="two")
    assert selectors.get_active_config(SLUG).version_number == 2

    code = "from models_config.services import activate_version; activate_version('flux-kontext-pro', 1)"
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        env=subprocess_env,
        cwd=settings.BASE_DIR,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert selectors.get_active_config(SLUG).version_number == 2  # still trusted from the cache
    clock.now += settings.MODELS_CONFIG_CACHE_SECONDS + 0.05
    assert selectors.get_active_config(SLUG).version_number == 1


def test_reset_with_a_stale_base_version_is_a_conflict(staff):
    services.ensure_config_rows()
    services.save_version(SLUG, {"seed": 4}, author=staff, comment="someone else")
    with pytest.raises(services.VersionConflictError):
        services.reset_to_defaults(SLUG, author=staff, base_version=1, check_base=True)
    assert ModelConfig.objects.get(slug=SLUG).active_version.number == 2
