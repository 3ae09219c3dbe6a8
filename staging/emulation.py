"""Pointing this service at a Replicate emulator: one place for `stage --emulator`, `serve`'s bundled
emulator (and the commands run beside it), the bench and the tests.

Four settings make the switch (the token, the API base URL, no configured webhook secret so that the
emulator's own is fetched from its API, and the emulator's origin, scheme, host and port, among the
output hosts, since it serves the outputs itself); they are set together and undone together. Nothing
else needs telling: the gateway's per-thread client and its webhook-secret cache are keyed by the token
and base URL, so they follow the settings, and the config cache does not depend on them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.test.utils import override_settings

if TYPE_CHECKING:
    from replicate_emulator import Emulator


def emulator_values(emulator: Emulator, **extra: Any) -> dict[str, Any]:
    """The settings that point this service at `emulator`, plus `extra` (which wins)."""
    return backend_values(emulator.base_url, emulator.api_token, **extra)


def backend_values(base_url: str, token: str, **extra: Any) -> dict[str, Any]:
    """The settings that point this service at the emulator answering at `base_url` with `token`."""
    hosts = list(settings.REPLICATE_OUTPUT_HOSTS)
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"  # scheme, host and port pinned (staging/collect.py)
    if origin not in hosts:
        hosts.append(origin)
    return {
        "REPLICATE_API_TOKEN": token,
        "REPLICATE_BASE_URL": base_url,
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


# --- The emulator of a running `serve` (docs/operations.md#commands-beside-make-run) -----------------

RUNTIME_FILE = ".serve-runtime.json"


def runtime_path() -> Path:
    """Where `serve` says which emulator it started: the project folder, so commands run there find it."""
    return Path(settings.BASE_DIR) / RUNTIME_FILE


def write_runtime(base_url: str, token: str) -> Path:
    """Record the emulator this `serve` process started (removed by `remove_runtime` when serve stops)."""
    path = runtime_path()
    path.write_text(json.dumps({"pid": os.getpid(), "base_url": base_url, "token": token}))
    return path


def remove_runtime() -> None:
    """Remove the record, if it is this process's (a second serve must not erase the first one's)."""
    runtime = _read_runtime()
    if runtime is not None and runtime.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            runtime_path().unlink()


def _read_runtime() -> dict[str, Any] | None:
    try:
        value = json.loads(runtime_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(key), str) for key in ("base_url", "token")):
        return None
    return value if isinstance(value.get("pid"), int) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def use_serve_backend() -> str:
    """With no REPLICATE_API_TOKEN set, use the emulator a running `serve` in this folder started.

    Returns the one line saying so ("" when a token is set, or no live serve left a record: the
    caller's usual "token not set" message then applies). A record whose process is gone is ignored.
    The settings change for the rest of this process, as if they had been exported.
    """
    if settings.REPLICATE_API_TOKEN:
        return ""
    runtime = _read_runtime()
    if runtime is None or runtime["pid"] == os.getpid() or not _alive(runtime["pid"]):
        return ""
    for name, value in backend_values(runtime["base_url"], runtime["token"]).items():
        setattr(settings, name, value)
    return f"No REPLICATE_API_TOKEN set: using the emulator of `serve` (pid {runtime['pid']}) at {runtime['base_url']}."
