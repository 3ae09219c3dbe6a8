"""`staging.fetch`: the SSRF defences, on their own. Only loopback is ever contacted (see `_loopback_only`)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from staging import fetch
from tests.fixtures.photos import image_bytes

pytestmark = pytest.mark.usefixtures("_loopback_only")  # see tests/staging/conftest.py
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]
NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.0.9",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert fetch.address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_internal_and_special_addresses_are_refused(address: str) -> None:
    assert not fetch.address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/room.jpg", "Only http and https"),
        ("file:///etc/passwd", "Only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "Only http and https"),
        ("room.jpg", "Only http and https"),
        ("http:///room.jpg", "no host"),
        ("http://user:pw@example.com/room.jpg", "credentials"),
        ("http://example.com:99999/room.jpg", "not a valid URL"),
    ],
)
def test_bad_urls_are_refused_before_resolving(url: str, message: str, monkeypatch) -> None:
    def no_dns(*args, **kwargs):
        raise AssertionError("resolved a URL that should have been refused first")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(fetch.FetchRefused, match=message):
        fetch.vet(url)


def test_any_non_public_answer_refuses_the_host(settings) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = False
    mixed = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")]
    with pytest.raises(fetch.FetchRefused, match="non-public address"):
        fetch.vet("https://photos.example/room.jpg", resolver=lambda host, port: mixed)


def test_vetted_target_pins_the_ip_and_keeps_the_name(settings) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = False
    target = fetch.vet(
        "https://photos.example/a/room.jpg?x=1#frag", resolver=lambda h, p: [ipaddress.ip_address("8.8.8.8")]
    )
    assert str(target.connect_url) == "https://8.8.8.8/a/room.jpg?x=1"
    assert target.host_header == "photos.example"
    assert target.extensions == {"sni_hostname": "photos.example"}
    v6 = fetch.vet("http://[2606:4700:4700::1111]:8080/x", resolver=lambda h, p: [ipaddress.ip_address(h)])
    assert str(v6.connect_url) == "http://[2606:4700:4700::1111]:8080/x"
    assert v6.host_header == "[2606:4700:4700::1111]:8080" and v6.extensions == {}


def test_fetch_connects_to_the_vetted_ip_without_a_second_lookup(settings, photo_server, monkeypatch) -> None:
    """DNS rebinding: the name is resolved once; the connection goes to that IP, the name rides in Host."""
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    port = int(photo_server.base.rsplit(":", 1)[1])
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host, *args, **kwargs):
        lookups.append(host)
        if host == "photos.example":  # first answer loopback (our server), later answers "elsewhere"
            answer = "127.0.0.1" if len(lookups) == 1 else "10.9.9.9"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    data = fetch.fetch_image(f"http://photos.example:{port}/room.jpg")
    assert data == photo_server.routes["/room.jpg"][2]
    assert lookups.count("photos.example") == 1
    assert photo_server.hits == [("/room.jpg", f"photos.example:{port}")]


def test_fetch_follows_a_few_vetted_redirects(settings, photo_server) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    photo_server.routes["/r1"] = (302, {"Location": "/r2"}, b"")
    photo_server.routes["/r2"] = (301, {"Location": photo_server.url("/room.jpg")}, b"")
    assert fetch.fetch_image(photo_server.url("/r1")) == photo_server.routes["/room.jpg"][2]


def test_too_many_redirects_are_refused(settings, photo_server) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    photo_server.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(fetch.FetchRefused, match="redirects more than 3"):
        fetch.fetch_image(photo_server.url("/loop"))
    assert len(photo_server.hits) == fetch.MAX_REDIRECTS + 1


@pytest.fixture
def only_this_loopback_server(settings, monkeypatch):
    """Addresses are vetted for real, except that 127.0.0.1 (the test's photo server) passes."""
    settings.STAGING_FETCH_ALLOW_PRIVATE = False
    real = fetch.address_allowed
    monkeypatch.setattr(fetch, "address_allowed", lambda ip: str(ip) == "127.0.0.1" or real(ip))


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/room.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/room.jpg",
        "http://[::ffff:192.168.0.1]/room.jpg",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_private_address_is_refused(
    location: str, only_this_loopback_server, photo_server, _loopback_only
) -> None:
    photo_server.routes["/go"] = (302, {"Location": location}, b"")
    with pytest.raises(fetch.FetchRefused):
        fetch.fetch_image(photo_server.url("/go"))
    assert [path for path, _ in photo_server.hits] == ["/go"]
    assert _loopback_only == []


def test_declared_oversize_is_refused_before_reading(settings, photo_server) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    big = image_bytes(size=(400, 400)) + b"\0" * 50_000
    photo_server.routes["/big.jpg"] = (200, {"Content-Type": "image/jpeg"}, big)
    with pytest.raises(fetch.FetchRefused, match="more than the"):
        fetch.fetch_image(photo_server.url("/big.jpg"), max_bytes=10_000)


def test_undeclared_oversize_is_cut_off_while_streaming(settings, photo_server) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    photo_server.routes["/stream.jpg"] = (200, {"X-Omit-Length": "1"}, b"\xff" * 200_000)
    with pytest.raises(fetch.FetchRefused, match="larger than the"):
        fetch.fetch_image(photo_server.url("/stream.jpg"), max_bytes=10_000)


def test_error_status_and_dead_port_are_refused(settings, photo_server) -> None:
    settings.STAGING_FETCH_ALLOW_PRIVATE = True
    with pytest.raises(fetch.FetchRefused, match="HTTP 404"):
        fetch.fetch_image(photo_server.url("/missing.jpg"))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(fetch.FetchRefused, match="could not be downloaded"):
        fetch.fetch_image(f"http://127.0.0.1:{port}/room.jpg")


def test_unresolvable_host_is_refused(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(fetch.FetchRefused, match="could not be resolved"):
        fetch.vet("https://no-such-host.invalid/room.jpg")


def test_the_loopback_guard_stops_off_machine_connections(_loopback_only) -> None:
    """The safety net of this package: a connect() to a non-loopback address fails before any packet."""
    from .conftest import OffLoopbackConnect

    with pytest.raises(OffLoopbackConnect):
        socket.create_connection(("10.0.0.1", 80), timeout=0.1)
    assert _loopback_only == [("10.0.0.1", 80)]
