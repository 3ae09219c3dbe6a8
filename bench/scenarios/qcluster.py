"""A real `manage.py qcluster` child process, for the cluster tests and the soak benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings


class QCluster:
    """A real `manage.py qcluster` child in its own process group, stopped SIGTERM → 5 s → SIGKILL.

    `name` tells several clusters in one log directory apart (the soak runs two, as two hosts would):
    each start writes `<name>-<n>.log`.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "qcluster") -> None:
        self.env = env
        self.log_dir = log_dir
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> QCluster:
        self.starts += 1
        log = (self.log_dir / f"{self.name}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "qcluster"],
            env=self.env,
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, nothing gets to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # qcluster sometimes hangs on SIGTERM: the SIGKILL below ends it
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # also reaps workers left behind
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        """Everything this cluster wrote, over all its starts."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))
