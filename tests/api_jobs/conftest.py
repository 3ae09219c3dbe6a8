"""Fixtures for the jobs API tests: the emulator pipeline, users and tokens, a local photo server.

`_loopback_only` guards every test in this package: a socket connection to anything but loopback
fails the test, so an SSRF check that let a request through cannot send traffic off the machine.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from PIL import Image

from api.services import create_api_token
from models_config import services as config_services
from tests.fixtures.loopback import loopback_server

JOB_PERMS = ("add_stagingjob", "view_stagingjob", "change_stagingjob")


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 150, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


class OffLoopbackConnect(AssertionError):
    pass


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX: a path, local by definition
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name here would mean a resolution we do not control


@pytest.fixture(autouse=True)
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


@pytest.fixture
def pipeline(pipeline, settings):
    """The shared pipeline settings, with image URLs held to public addresses and config rows stored."""
    settings.STAGING_FETCH_ALLOW_PRIVATE = False
    config_services.ensure_config_rows()
    return pipeline


def _staff(username: str, *codenames: str, **extra) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True, **extra)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="staging", codename__in=codenames))
    return user


@pytest.fixture
def operator(db) -> User:
    return _staff("operator", *JOB_PERMS)


@pytest.fixture
def operator_client(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def make_user(db):
    return _staff


@pytest.fixture
def token_for(db):
    def make(user: User) -> str:
        _, raw = create_api_token(user, "tests")
        return raw

    return make


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
