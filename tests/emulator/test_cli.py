"""The command line: flags map onto the Emulator and its faults; both entry points run and fail cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from replicate_emulator import cli

ROOT = Path(__file__).resolve().parents[2]


def test_flags_configure_the_emulator_and_faults():
    options = vars(
        cli.build_parser().parse_args(
            [
                "--port",
                "0",
                "--token",
                "tok",
                "--latency",
                "0.5",
                "--jitter",
                "0.1",
                "--retention",
                "10",
                "--create-429",
                "2",
                "--fail-rate",
                "0.25",
                "--throttle-reset-seconds",
                "30",
                "--fail-error",
                "boom",
                "--webhook-delay",
                "1.5",
                "--create-rate-limit",
                "600",
                "--drop-after-create",
                "1",
            ]
        )
    )
    emulator = cli.emulator_from_options(options)
    faults = emulator.faults.snapshot()
    assert (emulator.api_token, emulator.retention_seconds) == ("tok", 10.0)
    assert faults["latency"] == 0.5 and faults["jitter"] == 0.1
    assert faults["create_429"] == 2 and faults["drop_after_create"] == 1 and faults["fail_rate"] == 0.25
    assert faults["throttle_reset_seconds"] == 30 and faults["fail_error"] == "boom"
    assert faults["webhook_delay"] == 1.5 and faults["create_rate_limit"] == 600
    emulator.reset()  # reset goes back to the command line's faults, not to none
    assert emulator.faults.snapshot()["create_429"] == 2


@pytest.mark.parametrize(
    "argv", [["--port", "70000"], ["--create-429", "-1"], ["--fail-rate", "2"], ["--latency", "x"], ["--nope"]]
)
def test_bad_flags_exit_non_zero_with_one_line(argv):
    result = subprocess.run(
        [sys.executable, "-m", "replicate_emulator", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "error:" in result.stderr


def _run_until_ready(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    first_line = process.stdout.readline()
    assert "running at" in first_line, process.stderr.read() if process.poll() is not None else first_line
    return process, first_line.rsplit(" ", 1)[1].strip()


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "replicate_emulator"],
        [sys.executable, "manage.py", "replicate_emulator"],
    ],
)
def test_entry_points_serve_until_terminated(command):
    process, base_url = _run_until_ready([*command, "--port", "0", "--token", "cli-token", "--create-503", "1"])
    try:
        assert httpx.get(f"{base_url}/_emulator/faults").json()["create_503"] == 1
        unauth = httpx.get(f"{base_url}/v1/predictions")
        assert unauth.status_code == 401
        assert httpx.get(f"{base_url}/v1/predictions", headers={"Authorization": "Bearer cli-token"}).is_success
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0


def test_management_command_help_and_bad_arguments():
    help_text = subprocess.run(
        [sys.executable, "manage.py", "replicate_emulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_text.returncode == 0
    assert "--create-429" in help_text.stdout and "Replicate" in help_text.stdout
    bad = subprocess.run(
        [sys.executable, "manage.py", "replicate_emulator", "--moderate", "many"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "moderate" in bad.stderr
