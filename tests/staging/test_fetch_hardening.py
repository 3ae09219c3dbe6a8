"""`image_url` hardening: one deadline over every hop and the body, control characters, what the SSRF
check refuses and what its messages leave out. Only loopback is ever contacted (`_loopback_only`).

Time is a fake clock handed to `fetch_image`: a slow server spends it by moving the clock, and a
server that must not answer blocks on an Event, released when the test ends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from staging import fetch
from staging.models import StagingJob
from tests.fixtures.loopback import loopback_server
from tests.fixtures.photos import image_bytes
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.usefixtures("_loopback_only")  # see tests/staging/conftest.py
PHOTO = image_bytes(size=(80, 60))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedServer:
    """A loopback server whose paths run a script: `script(handler)` writes the whole answer itself."""

    base: str = ""
    scripts: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # what a stalled answer waits for

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server(settings) -> Iterator[ScriptedServer]:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True  # the server is on 127.0.0.1
    state = ScriptedServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.hits.append(self.path)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up first
                state.scripts[self.path](self)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Handler) as base:
        state.base = base
        try:
            yield state
        finally:
            state.release.set()


def redirect(to: str, before: Callable[[], None] = lambda: None) -> Callable[[BaseHTTPRequestHandler], None]:
    def script(handler: BaseHTTPRequestHandler) -> None:
        before()
        handler.send_response(302)
        handler.send_header("Location", to)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return script


def photo(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(PHOTO)))
    handler.end_headers()
    handler.wfile.write(PHOTO)


# --- one deadline ---------------------------------------------------------------------------------


def test_slow_hops_share_one_deadline(server) -> None:
    clock = FakeClock()

    def spend(seconds: float) -> Callable[[], None]:
        def move() -> None:
            clock.now += seconds

        return move

    server.scripts["/a"] = redirect("/b", before=spend(6))  # each hop well inside the 10 s on its own
    server.scripts["/b"] = redirect("/c", before=spend(6))
    server.scripts["/c"] = photo
    with pytest.raises(fetch.FetchRefused, match="took too long"):
        fetch.fetch_image(server.url("/a"), timeout=10, clock=clock)
    assert server.hits == ["/a", "/b"]  # the third hop was never asked for: no time was left


def test_the_same_hops_within_the_deadline_succeed(server) -> None:
    clock = FakeClock()
    server.scripts["/a"] = redirect("/b", before=lambda: setattr(clock, "now", clock.now + 4))
    server.scripts["/b"] = photo
    assert fetch.fetch_image(server.url("/a"), timeout=10, clock=clock) == PHOTO
    assert server.hits == ["/a", "/b"]


def test_a_hop_waits_for_headers_only_as_long_as_is_left(server) -> None:
    """The second hop's server never answers: the wait ends when the deadline does, not a whole timeout later."""
    clock = FakeClock()
    server.scripts["/a"] = redirect("/stall", before=lambda: setattr(clock, "now", clock.now + 29.8))
    server.scripts["/stall"] = lambda handler: server.release.wait(timeout=60)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fetch.fetch_image(server.url("/a"), timeout=30, clock=clock)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    finished = wait_until(lambda: not worker.is_alive(), timeout=10)  # a whole new 30 s would not fit
    server.release.set()
    assert finished, "the second hop was given the whole timeout again"
    [error] = outcome
    assert isinstance(error, fetch.FetchRefused) and "took too long" in str(error)
    assert server.hits == ["/a", "/stall"]


def test_a_body_that_outlasts_the_deadline_is_cut_off(server) -> None:
    clock = FakeClock()

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")  # no length: the body runs until the server closes
        handler.end_headers()
        handler.wfile.write(PHOTO[:100])
        handler.wfile.flush()
        clock.now += 31
        handler.wfile.write(PHOTO[100:200])
        handler.wfile.flush()
        server.release.wait(timeout=60)

    server.scripts["/drip"] = drip
    with pytest.raises(fetch.FetchRefused, match="took too long"):
        fetch.fetch_image(server.url("/drip"), timeout=30, clock=clock)


def test_the_watchdog_shuts_a_socket_blocked_in_a_read() -> None:
    """However the server drips, the hop's socket is shut when its time is up."""
    ours, theirs = socket.socketpair()
    received: list[bytes] = []
    with ours, theirs:
        watchdog = fetch.Watchdog(0.05)
        stream = type("Stream", (), {"get_extra_info": lambda self, name: ours if name == "socket" else None})()
        watchdog.trace("connection.connect_tcp.complete", {"return_value": stream})
        reader = threading.Thread(target=lambda: received.append(ours.recv(10)), daemon=True)
        with watchdog:
            reader.start()
            assert wait_until(lambda: not reader.is_alive())
        assert watchdog.fired and received == [b""]  # the read returned: the socket was shut


def test_a_watchdog_that_fired_before_the_connection_shuts_it_at_once() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        watchdog = fetch.Watchdog(0.0)
        with watchdog:
            assert wait_until(lambda: watchdog.fired)
        stream = type("Stream", (), {"get_extra_info": lambda self, name: ours})()
        watchdog.trace("connection.connect_tcp.complete", {"return_value": stream})
        assert ours.recv(10) == b""


# --- control characters ----------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f"])
@pytest.mark.parametrize("where", ["http://photos.example/ro{c}om.jpg", "http://pho{c}tos.example/room.jpg"])
def test_a_control_character_anywhere_is_refused_before_resolving(char, where, monkeypatch) -> None:
    def no_dns(*args, **kwargs):
        raise AssertionError("resolved a URL that should have been refused first")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(fetch.FetchRefused, match=rf"control character \(U\+{ord(char):04X}\)"):
        fetch.fetch_image(where.format(c=char))


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://photos.example/a\x01b.jpg", "http://photos.example/\x00", "\x7f"])
def test_the_jobs_api_answers_422_on_image_url_for_a_control_character(url, operator_client, settings) -> None:
    settings.REPLICATE_API_TOKEN = "r8_not_used"
    body = json.dumps({"image_url": url, "model": "flux-kontext-pro"})
    response = operator_client.post("/api/v1/jobs", body, content_type="application/json")
    assert response.status_code == 422, response.content
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "image_url"] and "control character" in error["msg"]
    assert not StagingJob.objects.exists()


# --- SSRF: what is refused, and what the message leaves out --------------------------------------------

MISSED_BY_IS_GLOBAL = [
    "fec0::1",  # site-local (deprecated, still routed inside some networks)
    "feff:ffff::1",  # the end of fec0::/10
    "192.88.99.1",  # 6to4 relay anycast
    "64:ff9b:1::a00:1",  # local-use NAT64
    "5f00::1",  # SRv6 SIDs
    "100:0:0:1::1",  # dummy IPv6 prefix
    "3fff::1",  # IPv6 documentation (2024)
    "224.0.0.251",  # multicast is "global" to ipaddress
    "233.252.0.1",
    "ff0e::1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "2001:db8::1",
    "198.18.0.1",  # benchmarking
    "192.0.0.1",
]


@pytest.mark.parametrize("address", MISSED_BY_IS_GLOBAL)
def test_special_purpose_addresses_are_refused(address: str) -> None:
    assert not fetch.address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "192.0.0.9", "2620:4f:8000::1"])
def test_globally_routable_addresses_still_pass(address: str) -> None:
    assert fetch.address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("internal", ["10.1.2.3", "fec0::42", "169.254.169.254", "fd12:3456::7"])
def test_the_message_does_not_echo_the_resolved_address(internal, settings, caplog) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = False
    answers = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address(internal)]
    with (
        caplog.at_level(logging.INFO, logger="staging.fetch"),
        pytest.raises(fetch.FetchRefused) as info,
    ):
        fetch.vet("https://db.internal.example/room.jpg", resolver=lambda host, port: answers)
    message = str(info.value)
    assert "db.internal.example" in message and "non-public" in message
    assert internal not in message and "8.8.8.8" not in message
    assert internal in caplog.text  # the operator can still see what it resolved to
