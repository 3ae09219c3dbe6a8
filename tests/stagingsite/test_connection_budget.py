"""A burst against the real app server never runs PostgreSQL out of connections.

The service's connections to its database are bounded by the settings, whatever the load
(docs/operations.md#connection-budget): WEB_CONCURRENCY x DATABASE_POOL_MAX for the app server, plus
Q_WORKERS + 3 per `qcluster`. Seen before the pool: one persistent connection per server thread, and
116 of 500 posts answered 500 with "sorry, too many clients already".
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.cluster

WEB_WORKERS, WEB_THREADS, POOL_MAX, Q_WORKERS = 2, 6, 2, 2
BUDGET = WEB_WORKERS * POOL_MAX + Q_WORKERS + 3  # what README.md's arithmetic promises
REQUESTS, CLIENTS = 600, 48


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:
        return 0, str(error).encode()


class ConnectionSampler(threading.Thread):
    """Counts, as often as it can, the server-side connections that carry the service's application name."""

    def __init__(self, dbname: str, application_name: str) -> None:
        super().__init__(daemon=True)
        db = connection.settings_dict
        self.conninfo = {
            "dbname": "postgres",
            "user": db.get("USER") or "postgres",
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or "127.0.0.1",
            "port": db.get("PORT") or 5432,
        }
        self.query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
        self.params = (dbname, application_name)
        self.peak = 0
        self.samples = 0
        self.done = threading.Event()

    def count(self) -> int:
        with psycopg.connect(**{k: v for k, v in self.conninfo.items() if v is not None}, autocommit=True) as conn:
            return conn.execute(self.query, self.params).fetchone()[0]

    def run(self) -> None:
        kwargs = {k: v for k, v in self.conninfo.items() if v is not None}
        with psycopg.connect(**kwargs, autocommit=True) as conn:
            while not self.done.is_set():
                self.peak = max(self.peak, conn.execute(self.query, self.params).fetchone()[0])
                self.samples += 1


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_requests_stays_inside_the_connection_budget(subprocess_env, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the pool and PostgreSQL's max_connections exist only on PostgreSQL")
    application_name = f"budget-{os.getpid()}"
    env = {k: v for k, v in subprocess_env.items() if not k.startswith(("REPLICATE_", "STAGING_"))}
    env.update(
        DATABASE_URL=f"{subprocess_env['DATABASE_URL']}?application_name={application_name}",
        WEB_CONCURRENCY=str(WEB_WORKERS),
        WEB_THREADS=str(WEB_THREADS),  # more threads than pool connections: they must wait, not connect
        DATABASE_POOL_MIN="1",
        DATABASE_POOL_MAX=str(POOL_MAX),
        Q_WORKERS=str(Q_WORKERS),
    )
    web, emulator = _free_port(), _free_port()
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(web), "--emulator-port", str(emulator)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sampler = ConnectionSampler(connection.settings_dict["NAME"], application_name)
    try:
        url = f"http://127.0.0.1:{web}/readyz"  # four queries: database, migrations, schedules, queue
        assert wait_until(lambda: _get(url)[0] in (200, 503), 60), "the app server never answered"
        sampler.start()
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(lambda _: _get(url), range(REQUESTS)))
        sampler.done.set()
        sampler.join(10)
    finally:
        sampler.done.set()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
    statuses = [status for status, _body in answers]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))  # 503: no cluster seen yet, never a 500
    assert not [body for _status, body in answers if b"too many clients" in body or b'"database": "ok"' not in body]
    assert sampler.samples > 10
    assert 0 < sampler.peak <= BUDGET, f"{sampler.peak} connections, budget {BUDGET}"
    assert wait_until(lambda: sampler.count() == 0, 30), "connections outlived the server"
