"""Fixtures for the API app's tests: staff users holding exactly the permissions a test names."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from api.services import create_api_token


@pytest.fixture
def make_user(db) -> Callable[..., User]:
    """`make_user(name, "app.codename", ..., is_staff=True)`: a user with those permissions only."""

    def make(username: str, *perms: str, is_staff: bool = True, **extra) -> User:
        user = User.objects.create_user(username, password="pw-" + username, is_staff=is_staff, **extra)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        return user

    return make


@pytest.fixture
def token_for(db) -> Callable[[User], str]:
    def make(user: User) -> str:
        return create_api_token(user, "tests")[1]

    return make


def logged_in(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client
