"""The production app server (gunicorn with stagingsite/gunicorn.conf.py) as a child process, for the soak.

The soak's webhooks and the photo links Replicate fetches go to this server, as they would in
production (docs/operations.md#the-app-server), not to a test server in the driver's process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from django.conf import settings

from tests.fixtures.waiting import wait_until

CONFIG = "stagingsite/gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """gunicorn on a free loopback port in its own process group; `url` is its base URL once started."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, port: int | None = None, workers: int = 2) -> None:
        self.env = {**env, "WEB_CONCURRENCY": str(workers)}
        self.log_dir = log_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> AppServer:
        """Start gunicorn and wait until `/healthz` answers 200; RuntimeError with its log if it never does."""
        log = (self.log_dir / "gunicorn.log").open("wb")
        args = [sys.executable, "-m", "gunicorn", "--config", str(Path(settings.BASE_DIR) / CONFIG)]
        self.proc = subprocess.Popen(
            [*args, "--bind", f"127.0.0.1:{self.port}"],
            env=self.env,
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until(self._healthy, timeout, step=0.2):
            self.stop()
            raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:g} s:\n{self.logs()}")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL whatever is left after gunicorn's grace period."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        path = self.log_dir / "gunicorn.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""
