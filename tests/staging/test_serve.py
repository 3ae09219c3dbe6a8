"""`manage.py serve` (what `make run` starts): everything comes up, and one signal stops it all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.cluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_with(marker: str) -> list[int]:
    """Pids whose environment carries `marker` (our scratch database URL): the service's processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_web_queue_and_emulator_and_one_signal_stops_them_all(tmp_path, stop_signal):
    database_url = f"sqlite:///{tmp_path}/serve.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE_", "STAGING_", "DATABASE_"))}
    env.update(
        DATABASE_URL=database_url, MEDIA_ROOT=str(tmp_path / "media"), DJANGO_SETTINGS_MODULE="stagingsite.settings"
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input"], env=env, cwd=settings.BASE_DIR, check=True, capture_output=True)
    web, emu = _free_port(), _free_port()
    serve = subprocess.Popen(
        [*manage, "serve", "--port", str(web), "--emulator-port", str(emu)],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: _answers(f"http://127.0.0.1:{web}/admin/login/"), 30), "web server never answered"
        assert _answers(f"http://127.0.0.1:{emu}/_emulator/health"), "the emulator is not running"
        assert wait_until(lambda: len(_processes_with(database_url)) >= 5, 15)  # serve, web, emulator, qcluster+
        serve.send_signal(stop_signal)  # to serve alone: it must stop its children itself
        serve.wait(timeout=30)
        assert wait_until(lambda: not _processes_with(database_url), 10), "children outlived serve"
        assert not _answers(f"http://127.0.0.1:{web}/admin/login/")
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
        for pid in _processes_with(database_url):
            os.kill(pid, signal.SIGKILL)
    output = serve.stdout.read().decode()
    assert f"Admin: http://127.0.0.1:{web}/admin/" in output
    assert "emulator" in output
