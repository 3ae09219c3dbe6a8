"""Pointing this service at a Replicate emulator: one place for `stage --emulator`, the bench and the tests.

Four settings make the switch (the token, the API base URL, no configured webhook secret so that the
emulator's own is fetched from its API, and the emulator's origin, scheme, host and port, among the
output hosts, since it serves the outputs itself); they are set together and undone together. Nothing
else needs telling: the gateway's per-thread client and its webhook-secret cache are keyed by the token
and base URL, so they follow the settings, and the config cache does not depend on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.test.utils import override_settings

if TYPE_CHECKING:
    from replicate_emulator import Emulator


def emulator_values(emulator: Emulator, **extra: Any) -> dict[str, Any]:
    """The settings that point this service at `emulator`, plus `extra` (which wins)."""
    hosts = list(settings.REPLICATE_OUTPUT_HOSTS)
    parts = urlsplit(emulator.base_url)
    origin = f"{parts.scheme}://{parts.netloc}"  # scheme, host and port pinned (staging/collect.py)
    if origin not in hosts:
        hosts.append(origin)
    return {
        "REPLICATE_API_TOKEN": emulator.api_token,
        "REPLICATE_BASE_URL": emulator.base_url,
        "REPLICATE_WEBHOOK_SECRET": "",
        "REPLICATE_OUTPUT_HOSTS": hosts,
        **extra,
    }


@contextmanager
def emulator_settings(emulator: Emulator, **extra: Any) -> Iterator[None]:
    """This process uses `emulator` (and the `extra` settings) inside the block; on exit, even by an
    exception, every setting is back to what it was.

    Django's `override_settings` does the switch: it replaces the settings as a whole and sends
    `setting_changed`, so nested or concurrent readers in other threads see either all the values or none.
    """
    with override_settings(**emulator_values(emulator, **extra)):
        yield


def emulator_environ(emulator: Emulator, **extra: Any) -> dict[str, str]:
    """The same settings as environment variables, for a child process (a `qcluster`) to read at start."""
    return {
        name: ",".join(value) if isinstance(value, list | tuple) else str(value)
        for name, value in emulator_values(emulator, **extra).items()
    }
