"""`manage.py serve`: the whole service in one terminal, as `make run` starts it.

Runs the web server and a `qcluster`, plus the bundled Replicate emulator when no
REPLICATE_API_TOKEN is set, and stops all of them on Ctrl-C. `qcluster` was seen to hang on
SIGTERM (docs/operations.md#deploy-order), so every child gets a grace period and then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

GRACE_SECONDS = 8.0
EMULATOR_TOKEN = "r8_emulator"


class Command(BaseCommand):
    help = (
        "Run the web server and a queue worker (qcluster); with no REPLICATE_API_TOKEN, also the bundled "
        "Replicate emulator. Ctrl-C stops them all."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address of the web server (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port of the web server (default 8000).")
        parser.add_argument("--emulator-port", type=int, default=8787, help="Port of the emulator (default 8787).")
        parser.add_argument(
            "--emulator-latency", type=float, default=3.0, help="Seconds each emulated prediction takes (default 3)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A supervisor's SIGTERM stops everything the same way as Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        host, port = options["host"], options["port"]
        _require_free_port(host, port, "the web server", "--port")
        env = os.environ.copy()
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            if not settings.REPLICATE_API_TOKEN:
                children.append(("emulator", self._start_emulator(env, host, port, options)))
            manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
            children.append(("qcluster", _spawn([*manage, "qcluster"], env)))
            children.append(("web", _spawn([*manage, "runserver", f"{host}:{port}", "--noreload"], env)))
            self.stdout.write(
                self.style.SUCCESS(f"Admin: http://{host}:{port}/admin/   API: http://{host}:{port}/api/v1/docs")
            )
            self.stdout.write("Press Ctrl-C to stop everything.")
            _wait_for_first_exit(children)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon the children
            _stop_all(children)

    def _start_emulator(
        self, env: dict[str, str], host: str, port: int, options: dict[str, Any]
    ) -> subprocess.Popen[bytes]:
        emulator_port = options["emulator_port"]
        _require_free_port("127.0.0.1", emulator_port, "the Replicate emulator", "--emulator-port")
        # The emulator's well-known dev token: not a secret, and lets `manage.py stage` in another
        # terminal use the running emulator with `REPLICATE_API_TOKEN=r8_emulator`.
        token = EMULATOR_TOKEN
        base_url = f"http://127.0.0.1:{emulator_port}"
        env["REPLICATE_API_TOKEN"] = token
        env["REPLICATE_BASE_URL"] = base_url
        # Let the emulator call our webhook and fetch our photos, as Replicate would.
        env.setdefault("STAGING_PUBLIC_URL", f"http://{host}:{port}")
        proc = _spawn(
            [
                sys.executable,
                "-m",
                "replicate_emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(emulator_port),
                "--token",
                token,
                "--latency",
                str(options["emulator_latency"]),
            ],
            env,
        )
        self.stdout.write(f"No REPLICATE_API_TOKEN set: using the bundled Replicate emulator at {base_url}")
        return proc


def _require_free_port(host: str, port: int, what: str, flag: str) -> None:
    with socket.socket() as sock:
        if sock.connect_ex((host, port)) == 0:
            raise CommandError(f"Port {port} on {host} is already in use; choose another for {what} with {flag}.")


def _wait_for_first_exit(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    while True:
        for name, proc in children:
            if proc.poll() is not None:
                raise CommandError(f"{name} exited with status {proc.returncode}; stopping the others.")
        time.sleep(0.5)


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own process group, so stopping it also stops the workers it forks (qcluster)."""
    return subprocess.Popen(args, env=env, cwd=settings.BASE_DIR, start_new_session=True)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _stop_all(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM every child's group, then SIGKILL whatever is left after the grace period."""
    for _, proc in children:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for _, proc in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        _signal_group(proc, signal.SIGKILL)  # also reaps a group whose leader has already exited
        proc.wait()
