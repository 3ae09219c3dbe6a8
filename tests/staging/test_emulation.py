"""`emulator_settings`: the one way to point this process at an emulator, undone on the way out."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings

from staging import gateway
from staging.emulation import emulator_environ, emulator_settings

FAKE = SimpleNamespace(api_token="r8_fake", base_url="http://127.0.0.1:8123")
NAMES = (
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "REPLICATE_WEBHOOK_SECRET",
    "REPLICATE_OUTPUT_HOSTS",
    "STAGING_PUBLIC_URL",
)


@pytest.fixture(autouse=True)
def real_account(settings) -> None:
    """A configured Replicate account, which the emulator must replace and then give back."""
    settings.REPLICATE_API_TOKEN = "r8_real"
    settings.REPLICATE_BASE_URL = "https://api.replicate.com"
    settings.REPLICATE_WEBHOOK_SECRET = "whsec_real"
    settings.REPLICATE_OUTPUT_HOSTS = ["replicate.delivery", "*.replicate.delivery"]
    settings.STAGING_PUBLIC_URL = "https://staging.example"


def current() -> dict[str, object]:
    return {name: getattr(django_settings, name) for name in NAMES}


def test_inside_the_block_this_process_uses_the_emulator_and_after_it_the_account() -> None:
    before = current()
    with emulator_settings(FAKE, STAGING_PUBLIC_URL=""):
        assert current() == {
            "REPLICATE_API_TOKEN": "r8_fake",
            "REPLICATE_BASE_URL": "http://127.0.0.1:8123",
            "REPLICATE_WEBHOOK_SECRET": "",  # the emulator's own secret is fetched from its API
            "REPLICATE_OUTPUT_HOSTS": ["replicate.delivery", "*.replicate.delivery", "http://127.0.0.1:8123"],
            "STAGING_PUBLIC_URL": "",
        }
    assert current() == before


def test_an_exception_in_the_block_restores_everything_too() -> None:
    before = current()
    with pytest.raises(RuntimeError, match="boom"), emulator_settings(FAKE, STAGING_MAX_ATTEMPTS=9):
        assert django_settings.STAGING_MAX_ATTEMPTS == 9
        raise RuntimeError("boom")
    assert current() == before
    assert django_settings.STAGING_MAX_ATTEMPTS != 9


def test_nested_blocks_give_back_the_outer_emulator(settings) -> None:
    settings.REPLICATE_OUTPUT_HOSTS = ["http://127.0.0.1:8123"]  # already allowed: not added twice
    other = SimpleNamespace(api_token="r8_other", base_url="http://localhost:9000")
    with emulator_settings(FAKE):
        assert django_settings.REPLICATE_OUTPUT_HOSTS == ["http://127.0.0.1:8123"]
        with emulator_settings(other):
            assert django_settings.REPLICATE_API_TOKEN == "r8_other"
            assert django_settings.REPLICATE_OUTPUT_HOSTS == ["http://127.0.0.1:8123", "http://localhost:9000"]
        assert django_settings.REPLICATE_API_TOKEN == "r8_fake"
        assert django_settings.REPLICATE_OUTPUT_HOSTS == ["http://127.0.0.1:8123"]
    assert django_settings.REPLICATE_API_TOKEN == "r8_real"


def test_the_same_values_as_environment_variables_for_a_child_process() -> None:
    env = emulator_environ(FAKE, STAGING_PUBLIC_URL="http://127.0.0.1:8000", STAGING_MAX_ATTEMPTS=3)
    assert env == {
        "REPLICATE_API_TOKEN": "r8_fake",
        "REPLICATE_BASE_URL": "http://127.0.0.1:8123",
        "REPLICATE_WEBHOOK_SECRET": "",
        "REPLICATE_OUTPUT_HOSTS": "replicate.delivery,*.replicate.delivery,http://127.0.0.1:8123",
        "STAGING_PUBLIC_URL": "http://127.0.0.1:8000",
        "STAGING_MAX_ATTEMPTS": "3",
    }


def test_the_gateway_follows_the_switch_both_ways(emulator) -> None:
    account_client = gateway.get_client()
    with emulator_settings(emulator):
        assert gateway.webhook_secret() == emulator.webhook_secret  # fetched from the emulator's API
        emulated_client = gateway.get_client()
        assert emulated_client is not account_client
    assert gateway.get_client() is not emulated_client
    assert gateway.webhook_secret() == "whsec_real"
