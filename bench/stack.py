"""The real stack for the HTTP benchmarks: a fresh PostgreSQL database, `manage.py serve`, a staff API token.

Used by `bench/throughput.py` and `bench/own_cost.py`. Everything the service runs is a child process,
as in production: `manage.py serve` starts gunicorn (the public URL, for the jobs API, the webhooks and the
signed photo links) and one `qcluster`; both read the emulator's settings from their environment
(`staging.emulation.emulator_environ`). This process is only the client: it POSTs jobs over HTTP, runs
the emulator in its own threads, and reads progress straight from the database (cheaper than asking the
API 500 times a second, and it gives the exact time the last job succeeded).

The database is created for the run and dropped after it (`BENCH_POSTGRES_URL`, the server's maintenance
database, default `postgres://postgres@127.0.0.1:5432/postgres`). Debug is off (production mode), with a
throw-away secret key and static root. The service runs with `bench.probe_settings`: its own settings plus
a record of each queue task's and each request's CPU (`bench/probe.py`), read by `Stack.steps()`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from django.conf import settings

from bench import probe
from replicate_emulator import Emulator
from staging.emulation import emulator_environ
from tests.fixtures.waiting import wait_until

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SLUG = "flux-kontext-pro"
_ACCESS_STATUS = re.compile(r'" (\d{3}) ')  # gunicorn's access-log line: `"POST /path HTTP/1.1" 201 …`
_TOKEN_SCRIPT = """
from django.contrib.auth import get_user_model
from api.services import create_api_token
user = get_user_model().objects.create_superuser("bench", "bench@example.com", None)
print(create_api_token(user, "bench")[1])
"""


class StackUnavailable(RuntimeError):
    """The stack cannot run here (no PostgreSQL): the benchmark says so in one line and is skipped."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database for one run; yields its URL, drops it afterwards (even on failure)."""
    name = f"staging_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StackUnavailable(f"PostgreSQL not reachable at {ADMIN_URL} ({first}); set BENCH_POSTGRES_URL") from None
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_db(ADMIN_URL, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Stack:
    """A running `manage.py serve` on a fresh database, and what the client needs to use it."""

    base_url: str
    token: str
    db_url: str
    workdir: Path
    serve: subprocess.Popen[bytes]
    log: Path
    pids: list[int] = field(default_factory=list)

    @property
    def probe_dir(self) -> Path:
        return self.workdir / "probe"

    def reset_steps(self) -> None:
        """Forget the records so far (the warm-up's)."""
        for path in self.probe_dir.glob("[0-9]*.tsv"):
            path.unlink()

    def steps(self) -> dict[tuple[str, str], list[float]]:
        """(kind, name) -> [count, CPU ms, wall ms] of the tasks and requests since `reset_steps`."""
        return probe.read(self.probe_dir)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url, autocommit=True)

    def server_errors(self) -> int:
        """Answers 5xx in gunicorn's access log so far (jobs API, webhooks, photo links alike)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(1 for match in _ACCESS_STATUS.finditer(text) if match.group(1).startswith("5"))

    def process_tree(self) -> list[int]:
        """Every process of the service (serve, gunicorn master and workers, qcluster and its workers)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    ppid = int(stat.rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.serve.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found


def process_cpu(pids: list[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) and command line of each live process among `pids`."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out[pid] = (cmdline, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    return result.stdout


@contextlib.contextmanager
def running_stack(emu: Emulator, **extra_env: str) -> Iterator[Stack]:
    """`manage.py serve` (gunicorn + one qcluster) against `emu`, on a fresh database; stopped and dropped after."""
    workdir = Path(tempfile.mkdtemp(prefix="staging-bench-stack-"))
    (workdir / "probe").mkdir()
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with fresh_database() as db_url:
        env = {
            **os.environ,
            **emulator_environ(emu, STAGING_PUBLIC_URL=base_url),
            "DATABASE_URL": db_url,
            "MEDIA_ROOT": str(workdir / "media"),
            "STATIC_ROOT": str(workdir / "static"),
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback: no TLS proxy in front here
            "Q_WORKERS": "2",
            "LOG_LEVEL": "WARNING",
            # One token posts every job as fast as it can: the service's throughput is measured, not its
            # per-token rate limit (docs/architecture.md#rate-limits).
            "STAGING_API_RATE": "off",
            "DJANGO_SETTINGS_MODULE": "bench.probe_settings",
            "BENCH_PROBE_DIR": str(workdir / "probe"),
            **extra_env,
        }
        _manage(env, "migrate", "--no-input")
        token = _manage(env, "shell", "-c", _TOKEN_SCRIPT).strip().splitlines()[-1]
        log = workdir / "serve.log"
        with log.open("wb") as out:
            serve = subprocess.Popen(
                [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "serve", "--port", str(port)],
                env=env,
                cwd=settings.BASE_DIR,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack = Stack(base_url, token, db_url, workdir, serve, log)
        try:
            if not wait_until(lambda: _healthy(base_url) or serve.poll() is not None, timeout=120, step=0.2):
                raise RuntimeError(f"manage.py serve did not answer /healthz within 120 s; see {log}")
            if serve.poll() is not None:
                raise RuntimeError(f"manage.py serve exited with {serve.returncode}; see {log}")
            yield stack
        finally:
            _stop(serve)


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(serve: subprocess.Popen[bytes]) -> None:
    """SIGTERM serve (it stops gunicorn and qcluster after its grace period), SIGKILL its group if it hangs."""
    if serve.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(serve.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            serve.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(serve.pid, signal.SIGKILL)
    serve.wait()


def succeeded_since(conn: psycopg.Connection, after_job: int) -> tuple[int, float | None]:
    """Jobs with id > `after_job` that have a succeeded attempt, and the epoch time the last one succeeded."""
    row = conn.execute(
        "SELECT count(DISTINCT job_id), extract(epoch FROM max(finished_at)) FROM staging_attempt "
        "WHERE state = 'succeeded' AND job_id > %s",
        (after_job,),
    ).fetchone()
    assert row is not None
    return int(row[0]), (float(row[1]) if row[1] is not None else None)


def failed_tasks(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM django_q_task WHERE success = false").fetchone()
    return int(row[0]) if row else 0
