"""Commands beside `make run`: the record `serve` leaves of its emulator, and who may use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from staging import emulation


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings) -> Path:
    """The record's place in a scratch folder; no token set, as when `make run` started the emulator."""
    path = tmp_path / emulation.RUNTIME_FILE
    monkeypatch.setattr(emulation, "runtime_path", lambda: path)
    settings.REPLICATE_API_TOKEN = ""  # through the fixture, so whatever this test sets is undone after it
    settings.REPLICATE_OUTPUT_HOSTS = ["replicate.delivery"]
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write(path: Path, pid: int) -> None:
    path.write_text(json.dumps({"pid": pid, "base_url": "http://127.0.0.1:8799", "token": "r8_emulator"}))


def test_a_live_serve_lends_its_emulator_and_says_so(record: Path) -> None:
    _write(record, os.getppid())  # a process that is alive (this test's parent)
    line = emulation.use_serve_backend()
    assert (
        line
        == f"No REPLICATE_API_TOKEN set: using the emulator of `serve` (pid {os.getppid()}) at http://127.0.0.1:8799."
    )
    assert django_settings.REPLICATE_API_TOKEN == "r8_emulator"
    assert django_settings.REPLICATE_BASE_URL == "http://127.0.0.1:8799"
    assert "http://127.0.0.1:8799" in django_settings.REPLICATE_OUTPUT_HOSTS


@pytest.mark.parametrize("content", ["not json", "[]", '{"pid": "1", "base_url": "x", "token": "y"}', None])
def test_no_usable_record_changes_nothing(record: Path, content: str | None) -> None:
    if content is None:
        _write(record, _dead_pid())  # serve was killed without cleaning up
    else:
        record.write_text(content)
    assert emulation.use_serve_backend() == ""
    assert django_settings.REPLICATE_API_TOKEN == ""


def test_a_token_set_wins_over_the_record(record: Path, settings) -> None:
    settings.REPLICATE_API_TOKEN = "r8_real"
    _write(record, os.getppid())
    assert emulation.use_serve_backend() == ""
    assert django_settings.REPLICATE_API_TOKEN == "r8_real"


def test_serve_removes_only_its_own_record(record: Path) -> None:
    emulation.write_runtime("http://127.0.0.1:8799", "r8_emulator")
    assert json.loads(record.read_text())["pid"] == os.getpid()
    emulation.remove_runtime()
    assert not record.exists()
    _write(record, os.getppid())  # another serve's
    emulation.remove_runtime()
    assert record.exists()
