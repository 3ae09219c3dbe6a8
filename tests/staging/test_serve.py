"""`manage.py serve` (what `make run` starts): everything comes up, and one signal stops it all.

Also however serve itself was started: a shell without job control (`nohup make test &`, CI) starts
background commands with SIGINT ignored, and a parent may leave signals blocked; serve must still stop
on SIGINT, and hand its children the default handling. With debug off, it serves the admin's static
files on a fresh clone without a separate `collectstatic`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.cluster

STOP_SIGNALS_MASK = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
ASSET = re.compile(r"""(?:src|href)\s*=\s*["'](/static/[^"']+)["']""")


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


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _get(url: str) -> tuple[int, dict[str, str], bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except OSError:
        return None


def _answers(url: str) -> bool:
    answer = _get(url)
    return answer is not None and answer[0] == 200


@dataclass
class Serving:
    process: subprocess.Popen[bytes]
    web: int
    emulator: int
    database_url: str

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web}{path}"

    def stop(self, sig: signal.Signals) -> None:
        """Send `sig` to serve alone (it must stop its children itself) and wait until all are gone."""
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        assert wait_until(lambda: not _processes_with(self.database_url), 10), "children outlived serve"
        assert not _answers(self.url("/healthz"))


@contextlib.contextmanager
def _serving(
    tmp_path: Path, preexec_fn: Callable[[], None] | None = None, **extra_env: str
) -> Iterator[tuple[Serving, list[str]]]:
    """Migrate a scratch database, start serve on free ports, yield once the web server answers."""
    database_url = f"sqlite:///{tmp_path}/serve.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE_", "STAGING_", "DATABASE_"))}
    env.update(
        DATABASE_URL=database_url, MEDIA_ROOT=str(tmp_path / "media"), DJANGO_SETTINGS_MODULE="stagingsite.settings"
    )
    env.update(extra_env)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input"], env=env, cwd=settings.BASE_DIR, check=True, capture_output=True)
    web, emu = _free_port(), _free_port()
    process = subprocess.Popen(
        [*manage, "serve", "--port", str(web), "--emulator-port", str(emu)],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    serving = Serving(process, web, emu, database_url)
    output: list[str] = []
    try:
        assert wait_until(lambda: _answers(serving.url("/healthz")), 60), "web server never answered"
        yield serving, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for pid in _processes_with(database_url):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        output.append(process.stdout.read().decode())


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_web_queue_and_emulator_and_one_signal_stops_them_all(tmp_path, stop_signal):
    with _serving(tmp_path) as (serving, output):
        assert _answers(serving.url("/admin/login/"))
        assert _answers(f"http://127.0.0.1:{serving.emulator}/_emulator/health"), "the emulator is not running"
        assert wait_until(
            lambda: len(_processes_with(serving.database_url)) >= 5, 15
        )  # serve, web, emulator, qcluster+
        commands = [_cmdline(pid) for pid in _processes_with(serving.database_url)]
        assert any("gunicorn" in command and "stagingsite/gunicorn.conf.py" in command for command in commands)
        assert any("qcluster" in command for command in commands)
        assert _answers(serving.url("/healthz?attempt=leaked-token-value"))
        serving.stop(stop_signal)
    assert f"Admin: http://127.0.0.1:{serving.web}/admin/" in output[0]
    assert "emulator" in output[0]
    assert '"GET /healthz HTTP/1.1" 200' in output[0]  # gunicorn's access log…
    assert "leaked-token-value" not in output[0]  # …without query strings: the webhook URL's carries a token


def _inherit_sigint_ignored_and_stop_signals_blocked() -> None:
    """What a shell without job control does to a background command, and what a careless parent may do."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def test_serve_stops_on_sigint_however_it_was_started(tmp_path):
    with _serving(tmp_path, preexec_fn=_inherit_sigint_ignored_and_stop_signals_blocked) as (serving, _output):
        parent = str(serving.process.pid)
        children = [pid for pid in _processes_with(serving.database_url) if _status(pid)["PPid"] == parent]
        assert len(children) == 3, [_cmdline(pid) for pid in children]  # emulator, qcluster, gunicorn
        for pid in children:  # nothing of the launcher's signal state reaches them
            assert int(_status(pid)["SigBlk"], 16) & STOP_SIGNALS_MASK == 0, _cmdline(pid)
        (emulator,) = [pid for pid in children if "replicate_emulator" in _cmdline(pid)]
        assert int(_status(emulator)["SigIgn"], 16) & (1 << (signal.SIGINT - 1)) == 0
        serving.stop(signal.SIGINT)
    assert serving.process.returncode == 0


def test_serve_with_debug_off_serves_the_static_files_on_a_fresh_clone(tmp_path):
    static_root = tmp_path / "static"  # empty, as on a fresh clone: serve collects
    production = {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "k" * 20 + "-production-only-" + "x" * 30,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP here: no TLS proxy in front
        "STATIC_ROOT": str(static_root),
    }
    with _serving(tmp_path, **production) as (serving, output):
        assert (static_root / "staticfiles.json").is_file()
        for page in ("/admin/login/", "/api/v1/docs"):
            status, _headers, body = _get(serving.url(page))
            assert status == 200, page
            assets = ASSET.findall(body.decode())
            assert assets, page
            for asset in assets:
                answer = _get(serving.url(asset))
                assert answer is not None and answer[0] == 200, asset
                assert "max-age=" in answer[1]["Cache-Control"], asset
            css = [asset for asset in assets if asset.endswith(".css")]
            assert css and all(re.search(r"\.[0-9a-f]{12}\.css$", asset) for asset in css), css  # hashed names
        serving.stop(signal.SIGTERM)
    assert "Collected the static files" in output[0]


def test_stage_beside_serve_uses_its_emulator_without_exporting_anything(tmp_path, photo_path):
    runtime = Path(settings.BASE_DIR) / ".serve-runtime.json"
    with _serving(tmp_path) as (serving, _output):
        assert json.loads(runtime.read_text())["base_url"] == f"http://127.0.0.1:{serving.emulator}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE_", "STAGING_", "DATABASE_"))}
        env.update(DATABASE_URL=serving.database_url, MEDIA_ROOT=str(tmp_path / "media"))
        stage = [sys.executable, "manage.py", "stage", str(photo_path), "--model", "flux-kontext-pro", "--wait"]
        result = subprocess.run(stage, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"using the emulator of `serve` (pid {serving.process.pid})" in result.stdout
        assert Path(result.stdout.strip().splitlines()[-1]).is_file()
        serving.stop(signal.SIGTERM)
    assert not runtime.exists()  # removed on exit: a later `stage` says the token is missing again
    result = subprocess.run(stage, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "REPLICATE_API_TOKEN is not set" in result.stderr
