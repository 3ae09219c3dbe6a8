"""Socket plumbing: a ThreadingHTTPServer that feeds requests to `App` and writes its responses.

HTTP/1.1 keep-alive like the real API (the official client pools connections); `drop_after_create`
is the one place that closes a connection without answering.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import App, Request, parse_target, problem

log = logging.getLogger("replicate_emulator.http")
MAX_BODY = 64 * 1024 * 1024


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid the 40 ms delayed-ACK stall
    server_version = "ReplicateEmulator/1.0"
    server: EmulatorHTTPServer

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            response = problem(400, "Bad request", "Malformed request body framing.")
        else:
            if body is None:
                self.close_connection = True
                response = problem(413, "Payload too large", f"Request bodies are limited to {MAX_BODY} bytes.")
            else:
                path, query = parse_target(self.path)
                try:
                    response = self.server.app.handle(Request(self.command, path, query, self.headers, body))
                except Exception as exc:  # answer like a server error instead of resetting the connection
                    log.exception("unhandled error for %s %s", self.command, path)
                    response = problem(500, "Internal Server Error", f"Emulator error: {type(exc).__name__}")
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        """Request lines go to logging at debug level (they never contain the token)."""
        log.debug("%s - %s", self.address_string(), format % args)
