"""Fixtures for the staging tests: webhook mode, a real qcluster, a local photo server, a loopback-only guard.

The pipeline itself (`pipeline`, `make_job`), users and photos are shared plugins in tests/fixtures/.

`_loopback_only` guards the jobs API and fetch tests (they ask for it): a socket connection to anything
but loopback fails the test, so an SSRF check that let a request through cannot send traffic off the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from bench.scenarios.qcluster import QCluster
from staging.emulation import emulator_environ, emulator_settings
from tests.fixtures.loopback import loopback_server
from tests.fixtures.photos import image_bytes

MANAGE = str(Path(django_settings.BASE_DIR) / "manage.py")


@pytest.fixture
def webhook_pipeline(pipeline, live_server, settings):
    """Webhook mode: the live test server is the public URL; the poller only acts on silent predictions."""
    settings.STAGING_PUBLIC_URL = live_server.url
    settings.ROOT_URLCONF = "tests.staging.urls"
    settings.STAGING_POLL_AFTER_SECONDS = 60
    return pipeline


@pytest.fixture
def staff(client: Client) -> Client:
    """The test client logged in as a superuser (the jobs admin)."""
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-not-used")
    client.force_login(user)
    return client


@pytest.fixture
def emulated(pipeline):
    """This process's settings pointed at the emulator (polling mode), queue tasks run inline."""
    return pipeline


# --- a real qcluster ----------------------------------------------------------------------------


@pytest.fixture
def cluster_env(settings, emulator, live_server, subprocess_env) -> Iterator[dict[str, str]]:
    """This process and the qcluster child both pointed at the emulator, with webhooks to the live server."""
    settings.ROOT_URLCONF = "tests.staging.urls"  # the emulator fetches the photos through signed links
    with emulator_settings(emulator, STAGING_PUBLIC_URL=live_server.url):
        env = dict(subprocess_env)
        env.update(emulator_environ(emulator, STAGING_PUBLIC_URL=live_server.url), Q_WORKERS="2", LOG_LEVEL="INFO")
        yield env


@pytest.fixture
def qcluster(cluster_env, tmp_path) -> Iterator[QCluster]:
    cluster = QCluster(cluster_env, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


# --- a photo server for image URLs ----------------------------------------------------------------


@dataclass
class PhotoServer:
    """A tiny HTTP server on 127.0.0.1; `routes` maps a path to (status, headers, body)."""

    base: str = ""
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header) of every request

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def photo_server() -> Iterator[PhotoServer]:
    server_state = PhotoServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server_state.hits.append((self.path, self.headers.get("Host", "")))
            status, headers, body = server_state.routes.get(self.path, (404, {}, b"not found"))
            self.send_response(status)
            for key, value in headers.items():
                if key != "X-Omit-Length":
                    self.send_header(key, value)
            if "Content-Length" not in headers and "X-Omit-Length" not in headers:  # else: until close
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped at its cap
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server_state.routes["/room.jpg"] = (200, {"Content-Type": "image/jpeg"}, image_bytes(size=(80, 60)))
    with loopback_server(Handler) as base:
        server_state.base = base
        yield server_state


# --- nothing leaves the machine -------------------------------------------------------------------


class OffLoopbackConnect(AssertionError):
    pass


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX: a path, local by definition
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name here would mean a resolution we do not control


@pytest.fixture
def _loopback_only(monkeypatch) -> list[object]:
    """Fail any connect() to a non-loopback address (before it leaves the machine); records attempts."""
    attempted: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self, address):
        if not _is_loopback(address):
            attempted.append(address)
            raise OffLoopbackConnect(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _is_loopback(address):
            attempted.append(address)
            raise OffLoopbackConnect(f"test tried to connect to {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return attempted
