"""Downloading a job's photo from a URL a client gave us, without becoming an SSRF proxy.

The URL comes from outside, so anything it names could be ours: the metadata service at
169.254.169.254, the database on 10.x, the admin on 127.0.0.1. The defences, in order:

1. **Scheme and shape.** Only `http`/`https`, a host is required, credentials in the URL are refused,
   and so is a control character anywhere in it (`httpx` would refuse it later, and two URL parsers
   must never disagree about what the URL names).
2. **Resolve once, vet every address.** The host is resolved with `getaddrinfo`; if *any* answer is
   not globally routable, the URL is refused before any connection is attempted. "Globally routable"
   is `ipaddress`'s `is_global`, which already refuses loopback, private, link-local, carrier-grade
   NAT, unspecified, documentation and benchmarking ranges, plus the cases it lets through (Python
   3.11): every multicast address, IPv6 site-local `fec0::/10`, the 6to4 relay anycast
   `192.88.99.0/24`, and the special-purpose IPv6 blocks `64:ff9b:1::/48` (local-use NAT64),
   `5f00::/16` (SRv6), `100:0:0:1::/64` (dummy prefix) and `3fff::/20` (documentation), listed in
   `NOT_GLOBAL` so the answer does not depend on the Python version; addresses `ipaddress` calls
   reserved are refused too. IPv4-mapped, 6to4, Teredo and NAT64 addresses are unwrapped and their
   embedded IPv4 checked as well. Refusing on any bad answer (not just skipping it) keeps a
   half-poisoned name from being used at all. The message names the host as given, never the
   address it resolved to, so the error cannot be used to map internal DNS.
3. **Connect to the vetted IP, not the name (no DNS rebinding).** The request goes to a URL whose
   host *is* the vetted IP, so nothing resolves the name a second time (an attacker's DNS could
   answer "public" to us and "127.0.0.1" to a second lookup). The original name is sent in the
   `Host` header and, for https, as the TLS SNI / certificate hostname (httpcore's `sni_hostname`
   request extension; it is what the certificate is verified against), so virtual hosting and
   certificate checks work as for the name. `trust_env=False` keeps `HTTP(S)_PROXY` variables
   from routing the request elsewhere, and each hop uses a fresh client, so a pooled connection
   made for one name is never reused for another.
4. **Redirects re-vetted.** None are followed automatically; each `Location` goes through steps 1-3
   again, at most `MAX_REDIRECTS` times.
5. **Bounded cost.** The body is streamed and cut off past `STAGING_MAX_UPLOAD_BYTES` (a declared
   `Content-Length` over the cap is refused before reading). `STAGING_DOWNLOAD_TIMEOUT` is one
   deadline over the whole fetch: every hop (connect, wait for headers) and the body read. Each
   hop's timeouts are what is left of it, and a timer shuts the hop's socket when it passes, so a
   server that drips header or body bytes slowly cannot stretch any read beyond it either.

The rules for operators: docs/operations.md#image-urls.

`STAGING_FETCH_ALLOW_PRIVATE` (default False) turns step 2's address check off, for tests and
local development that serve photos from 127.0.0.1. Never set it in production.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
CONNECT_TIMEOUT = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Special-purpose blocks that `is_global` calls global on Python 3.11 (see step 2 above).
NOT_GLOBAL = tuple(
    ipaddress.ip_network(block)
    for block in ("fec0::/10", "192.88.99.0/24", "64:ff9b:1::/48", "5f00::/16", "100:0:0:1::/64", "3fff::/20")
)
TOO_LONG = "The image URL took too long to download."


class FetchRefused(Exception):
    """The URL may not be fetched, or its answer cannot be used. `str(exc)` is for the client."""


@dataclass(frozen=True)
class Target:
    """A vetted hop: where to connect (the IP) and what to call the server (the name)."""

    url: str  # the URL as given (for messages and resolving relative redirects)
    scheme: str
    host: str  # hostname or IP literal from the URL (IPv6 without brackets)
    port: int
    ip: IPAddress

    @property
    def connect_url(self) -> httpx.URL:
        """The same URL with the vetted IP as its host: the connection goes exactly there."""
        return httpx.URL(self.url).copy_with(host=str(self.ip), port=self.port, fragment=None)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def extensions(self) -> dict[str, str]:
        # For a hostname the certificate must match the name, not the IP we connect to.
        if self.scheme == "https" and not _is_ip_literal(self.host):
            return {"sni_hostname": self.host}
        return {}


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address tunnels to (6to4, Teredo, NAT64)."""
    found = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [addr for addr in found if addr is not None]


def address_allowed(ip: IPAddress) -> bool:
    """True for a globally routable unicast address; False for anything internal or special."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_allowed(ip.ipv4_mapped)  # ::ffff:a.b.c.d *is* a.b.c.d on a dual-stack socket
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates += _embedded_ipv4(ip)
    return all(_globally_routable(addr) for addr in candidates)


def _globally_routable(addr: IPAddress) -> bool:
    return (
        addr.is_global
        and not addr.is_multicast
        and not addr.is_reserved
        and not any(addr.version == block.version and addr in block for block in NOT_GLOBAL)
    )


def _allow_private() -> bool:
    return settings.STAGING_FETCH_ALLOW_PRIVATE


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself, without DNS)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"The host {host!r} could not be resolved.") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone id
        if addr not in addresses:
            addresses.append(addr)
    if not addresses:
        raise FetchRefused(f"The host {host!r} has no addresses.")
    return addresses


def vet(url: str, *, resolver: Callable[[str, int], list[IPAddress]] | None = None) -> Target:
    """Check `url` and pick the IP to connect to. Raises FetchRefused; opens no connection."""
    control = next((ch for ch in url if ord(ch) < 0x20 or ord(ch) == 0x7F), None)
    if control is not None:
        raise FetchRefused(f"The image URL contains a control character (U+{ord(control):04X}); remove it.")
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise FetchRefused("The image URL is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise FetchRefused(f"Only http and https image URLs are accepted (got {scheme or 'no scheme'!r}).")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchRefused("The image URL has no host.")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # what DNS, the Host header and SNI all expect
        except UnicodeError:
            raise FetchRefused("The image URL's host is not a valid domain name.") from None
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("Image URLs with credentials (user:password@) are not accepted.")
    port = port or DEFAULT_PORTS[scheme]
    addresses = (resolver or resolve)(host, port)
    if not _allow_private():
        refused = [addr for addr in addresses if not address_allowed(addr)]
        if refused:
            logger.info("image_url host %r refused: it resolves to %s", host, ", ".join(map(str, refused)))
            raise FetchRefused(  # the address stays in the log: echoed, it would map internal DNS for the client
                f"The image URL's host {host!r} resolves to a non-public address; "
                "only public internet addresses may be fetched."
            )
    return Target(url=url, scheme=scheme, host=host, port=port, ip=addresses[0])


class Deadline:
    """One deadline over a whole fetch: every hop and the body read share `seconds`.

    `clock` is `time.monotonic` except in tests, which move it to spend the time without waiting.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.at = clock() + seconds

    def left(self) -> float:
        """Seconds left; raises FetchRefused when none are."""
        remaining = self.at - self.clock()
        if remaining <= 0:
            raise FetchRefused(TOO_LONG)
        return remaining


class Watchdog:
    """Shuts one hop's socket after `seconds`, whatever read it is blocked in.

    A read timeout bounds each `recv`, not their sum: a server sending a byte a second keeps every
    read short. httpcore's `trace` extension hands over the socket as soon as it is connected.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, object]) -> None:
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None  # type: ignore[attr-defined]
            with self._lock:
                self._sock = sock
                if self.fired:
                    self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def _read_capped(response: httpx.Response, cap: int, deadline: Deadline, watchdog: Watchdog) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise FetchRefused(f"The image at the URL is {_mb(int(declared))}, more than the {_mb(cap)} limit.")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > cap:
            raise FetchRefused(f"The image at the URL is larger than the {_mb(cap)} limit.")
        deadline.left()
        chunks.append(chunk)
    if watchdog.fired:  # a body read until the connection closes ends "normally" when the watchdog shuts it
        raise FetchRefused(TOO_LONG)
    deadline.left()
    return b"".join(chunks)


def fetch_image(
    url: str,
    *,
    max_bytes: int | None = None,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """The bytes behind a client-supplied image URL, with every check above. Raises FetchRefused.

    Whether the bytes are an acceptable image is `images.check_upload`'s business, as for uploads.
    """
    cap = max_bytes or settings.STAGING_MAX_UPLOAD_BYTES
    deadline = Deadline(timeout or float(getattr(settings, "STAGING_DOWNLOAD_TIMEOUT", 30.0)), clock)
    for _hop in range(MAX_REDIRECTS + 1):
        target = vet(url)
        left = deadline.left()
        per_operation = httpx.Timeout(left, connect=min(CONNECT_TIMEOUT, left))
        headers = {"Host": target.host_header, "Accept": "image/*", "User-Agent": "virtual-staging-fetch/1"}
        watchdog = Watchdog(left)
        extensions = {**target.extensions, "trace": watchdog.trace}
        try:
            with (
                watchdog,
                httpx.Client(timeout=per_operation, follow_redirects=False, trust_env=False) as client,
                client.stream("GET", target.connect_url, headers=headers, extensions=extensions) as response,
            ):
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchRefused("The image URL redirects without a Location.")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise FetchRefused(f"The image URL answered HTTP {response.status_code}, not 200.")
                return _read_capped(response, cap, deadline, watchdog)
        except httpx.TimeoutException:
            raise FetchRefused(TOO_LONG) from None
        except httpx.HTTPError as exc:
            if watchdog.fired:
                raise FetchRefused(TOO_LONG) from None
            raise FetchRefused(f"The image URL could not be downloaded ({type(exc).__name__}).") from None
        except httpx.InvalidURL:
            raise FetchRefused("The image URL is not a valid URL.") from None
    raise FetchRefused(f"The image URL redirects more than {MAX_REDIRECTS} times.")
