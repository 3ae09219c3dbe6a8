"""`manage.py serve`: the whole service in one terminal, as `make run` starts it.

Runs the app server (gunicorn with stagingsite/gunicorn.conf.py) and a `qcluster`, plus the bundled
Replicate emulator when no REPLICATE_API_TOKEN is set, and stops all of them on Ctrl-C or SIGTERM.
With debug off it first collects the static files when they are missing or stale. It restores the
default handling of SIGINT and SIGTERM for itself and its children: started in the background by a
shell without job control (`nohup make test &`, CI) it inherits SIGINT as ignored, and would never stop.
`qcluster` was seen to hang on SIGTERM (docs/operations.md#deploy-order), so every child gets a grace
period and then SIGKILL.
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

from staging import emulation
from stagingsite import appserver
from stagingsite.static_files import collect_if_stale

GRACE_SECONDS = 8.0
GUNICORN_CONFIG = "stagingsite/gunicorn.conf.py"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EMULATOR_TOKEN = "r8_emulator"


class Command(BaseCommand):
    help = (
        "Run the app server (gunicorn) and a queue worker (qcluster); with no REPLICATE_API_TOKEN, also the "
        "bundled Replicate emulator. Ctrl-C or SIGTERM stops them all."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address of the web server (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port of the web server (default 8000).")
        parser.add_argument("--emulator-port", type=int, default=8787, help="Port of the emulator (default 8787).")
        parser.add_argument(
            "--emulator-latency", type=float, default=3.0, help="Seconds each emulated prediction takes (default 3)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        _take_stop_signals()
        host, port = options["host"], options["port"]
        try:
            workers, threads = appserver.workers(), appserver.threads()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        _require_free_port(host, port, "the web server", "--port")
        env = os.environ.copy()
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            if not settings.DEBUG and collect_if_stale():
                self.stdout.write(f"Collected the static files into {settings.STATIC_ROOT}")
            if not settings.REPLICATE_API_TOKEN:
                children.append(("emulator", self._start_emulator(env, host, port, options)))
            manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
            children.append(("qcluster", _spawn([*manage, "qcluster"], env)))
            children.append(("web", _spawn(_gunicorn_args(host, port), env)))
            base = f"http://{_url_host(host)}:{port}"
            self.stdout.write(self.style.SUCCESS(f"Admin: {base}/admin/   API: {base}/api/v1/docs"))
            self.stdout.write(f"App server: gunicorn, {workers} workers x {threads} threads. Ctrl-C stops everything.")
            _wait_for_first_exit(children)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon the children
            emulation.remove_runtime()
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
        # `stage` and `reprocess` run in this folder find it here (docs/operations.md#commands-beside-make-run).
        emulation.write_runtime(base_url, token)
        self.stdout.write(f"No REPLICATE_API_TOKEN set: using the bundled Replicate emulator at {base_url}")
        return proc


def _take_stop_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt here, whatever was inherited (ignored, or blocked).

    Python leaves a signal ignored when it started ignored, and a blocked signal stays blocked across
    exec; once a handler is installed, exec resets it to the default in every child spawned after this.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _gunicorn_args(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(settings.BASE_DIR / GUNICORN_CONFIG),
        "--bind",
        f"{_url_host(host)}:{port}",
        # Finish requests in flight within serve's own grace period, before it escalates to SIGKILL.
        "--graceful-timeout",
        str(int(GRACE_SECONDS) - 2),
    ]


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
