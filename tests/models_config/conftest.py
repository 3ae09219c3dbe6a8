"""Fixtures for the config admin and API tests: users with exactly the permissions a test needs."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from models_config import services
from models_config.models import ModelConfig

SLUG = "qwen-image-edit"


def _staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="models_config", codename__in=codenames)
    )
    return user


@pytest.fixture
def rows(db) -> dict[str, ModelConfig]:
    services.ensure_config_rows()
    return {row.slug: row for row in ModelConfig.objects.all()}


@pytest.fixture
def editor(db) -> User:
    return _staff("editor", "view_modelconfig", "change_modelconfig")


@pytest.fixture
def viewer(db) -> User:
    return _staff("viewer", "view_modelconfig")


@pytest.fixture
def staff_no_perm(db) -> User:
    return _staff("bare")


@pytest.fixture
def non_staff(db) -> User:
    user = User.objects.create_user("customer", password="pw")
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_modelconfig", "change_modelconfig"]))
    return user


def logged_in(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def editor_client(editor) -> Client:
    return logged_in(editor)


@pytest.fixture
def viewer_client(viewer) -> Client:
    return logged_in(viewer)
