"""Standard Webhooks delivery: signed, retried, per-prediction ordered, never on an HTTP thread.

Messages for one prediction are sent in order (a drain task per prediction) so a receiver sees
`start` before `completed` unless a fault says otherwise; different predictions deliver in parallel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from .faults import Faults
from .store import Store

log = logging.getLogger("replicate_emulator.webhooks")


def new_secret() -> str:
    """A random `whsec_` secret (standard base64 never contains "_", which the client splits on)."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret; ValueError if it is not one."""
    prefix, _, encoded = secret.partition("_")
    if prefix != "whsec" or not encoded or "_" in encoded:
        raise ValueError("webhook secret must look like 'whsec_<base64>'")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValueError("webhook secret must look like 'whsec_<base64>'") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for one delivery."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Message:
    msg_id: str
    url: str
    body: str
    event: str


class WebhookSender:
    """Queues, signs and delivers webhook messages with bounded redelivery."""

    def __init__(
        self,
        *,
        key: bytes,
        faults: Faults,
        store: Store,
        retries: int = 3,
        backoff: float = 0.2,
        timeout: float = 5.0,
        workers: int = 16,
    ) -> None:
        self._key = key
        self._faults = faults
        self._store = store
        self._retries = retries
        self._backoff = backoff
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emu-webhook")
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Message]] = {}
        self._stopping = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._pending = 0

    def emit(self, prediction_id: str, url: str, body: str, event: str) -> None:
        """Queue one message (or none / two, as the webhook faults say)."""
        if self._stopping.is_set():
            return
        if self._faults.take("webhook_lost"):
            log.info("fault: dropping %s webhook for %s", event, prediction_id)
            return
        message = Message(msg_id="msg_" + os.urandom(12).hex(), url=url, body=body, event=event)
        copies = 2 if self._faults.take("webhook_duplicate") else 1
        with self._lock:
            queue = self._queues.get(prediction_id)
            start_drain = queue is None
            if queue is None:
                queue = self._queues[prediction_id] = deque()
            queue.extend([message] * copies)
            self._pending += copies
        if start_drain:
            self._pool.submit(self._drain, prediction_id)

    def _drain(self, prediction_id: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[prediction_id]
                if not queue:
                    del self._queues[prediction_id]
                    return
                message = queue.popleft()
            try:
                self._deliver(message)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, message: Message) -> None:
        delay = self._faults.get("webhook_delay")
        if delay > 0 and self._stopping.wait(delay):
            return
        for attempt in range(self._retries + 1):
            if self._stopping.is_set():
                return
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": message.msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, message.msg_id, timestamp, message.body),
                "user-agent": "replicate-emulator-webhook/1",
            }
            try:
                response = self._http.post(message.url, content=message.body.encode(), headers=headers)
                if 200 <= response.status_code < 300:
                    self._store.count_webhook(ok=True)
                    return
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            log.info("webhook %s (%s) attempt %d failed: %s", message.msg_id, message.event, attempt + 1, reason)
            if attempt < self._retries and self._stopping.wait(self._backoff * (2**attempt)):
                return
        self._store.count_webhook(ok=False)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued message is delivered or given up (for tests)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()
