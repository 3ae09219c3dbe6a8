"""In-memory state: predictions, uploaded files, output files and the create counters.

One re-entrant lock guards everything; the emulator is a test double, so simplicity beats
fine-grained locking. Records render themselves to the exact JSON Replicate returns.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
ALL_EVENTS = ("start", "output", "logs", "completed")


def new_id() -> str:
    """A 26-character lowercase base32 id, the shape of Replicate's prediction ids."""
    return base64.b32encode(os.urandom(16)).decode().rstrip("=").lower()


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with a Z, as Replicate writes timestamps."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def version_id(ref: str) -> str:
    """A stable fake version id per model, so create-by-version works across restarts."""
    return hashlib.sha256(ref.encode()).hexdigest()


def attempt_token(webhook: str | None) -> str:
    """The service's attempt token, carried in the webhook URL's `attempt` query parameter ("" if none)."""
    if not webhook:
        return ""
    return parse_qs(urlsplit(webhook).query).get("attempt", [""])[0]


@dataclass
class PredictionRecord:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    webhook: str | None
    events_filter: list[str] | None
    seq: int
    fate: str | None = None  # an error string or "moderate": decided at create time so faults hit a known prediction
    status: str = "starting"
    output: Any = None
    logs: str = ""
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    predict_time: float | None = None
    data_removed: bool = False
    output_keys: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self, base_url: str) -> dict[str, Any]:
        get_url = f"{base_url}/v1/predictions/{self.id}"
        data: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "output": self.output,
            "logs": self.logs,
            "error": self.error,
            "status": self.status,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "data_removed": self.data_removed,
            "metrics": {"predict_time": self.predict_time} if self.predict_time is not None else {},
            "urls": {"get": get_url, "cancel": f"{get_url}/cancel", "stream": f"{get_url}/stream"},
        }
        if self.webhook:
            data["webhook"] = self.webhook
            data["webhook_events_filter"] = list(self.events_filter or ALL_EVENTS)
        return data


@dataclass
class FileRecord:
    id: str
    name: str
    content_type: str
    content: bytes
    metadata: dict[str, Any]
    created_at: float
    expires_at: float

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": len(self.content),
            "etag": hashlib.md5(self.content).hexdigest(),
            "checksums": {
                "sha256": hashlib.sha256(self.content).hexdigest(),
                "md5": hashlib.md5(self.content).hexdigest(),
            },
            "metadata": self.metadata,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "urls": {"get": f"{base_url}/v1/files/{self.id}/download"},
        }


class Store:
    """All mutable emulator state plus the counters that prove "never pay twice"."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self.predictions: dict[str, PredictionRecord] = {}
            self.files: dict[str, FileRecord] = {}
            self.outputs: dict[str, tuple[bytes, str]] = {}  # "<pid>/<n>.<ext>" -> (bytes, content type)
            self._seq = 0
            self.creates_total = 0
            self.creates_by_token: dict[str, int] = {}
            self.creates_by_model: dict[str, int] = {}
            self.webhooks_sent = 0
            self.webhooks_failed = 0

    def add_prediction(self, **kwargs: Any) -> PredictionRecord:
        """Create and count one prediction (the moment Replicate would start charging)."""
        with self.lock:
            self._seq += 1
            record = PredictionRecord(id=new_id(), seq=self._seq, **kwargs)
            self.predictions[record.id] = record
            token = attempt_token(record.webhook)
            self.creates_total += 1
            self.creates_by_token[token] = self.creates_by_token.get(token, 0) + 1
            self.creates_by_model[record.model] = self.creates_by_model.get(record.model, 0) + 1
            return record

    def page(self, *, older_than: int | None, newer_than: int | None, size: int) -> list[PredictionRecord]:
        """Newest first; `older_than`/`newer_than` are sequence cursors."""
        with self.lock:
            records = sorted(self.predictions.values(), key=lambda r: r.seq, reverse=True)
        if newer_than is not None:
            newer = [r for r in records if r.seq > newer_than]
            return newer[-size:]
        if older_than is not None:
            records = [r for r in records if r.seq < older_than]
        return records[:size]

    def add_file(self, record: FileRecord) -> None:
        with self.lock:
            self.files[record.id] = record

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                "creates_total": self.creates_total,
                "creates_by_token": dict(self.creates_by_token),
                "creates_by_model": dict(self.creates_by_model),
                "webhooks_sent": self.webhooks_sent,
                "webhooks_failed": self.webhooks_failed,
            }

    def count_webhook(self, *, ok: bool) -> None:
        with self.lock:
            if ok:
                self.webhooks_sent += 1
            else:
                self.webhooks_failed += 1

    def remove_data(self, record: PredictionRecord) -> None:
        """Replicate's one-hour deletion: output, input and output files go away."""
        with self.lock:
            for key in record.output_keys:
                self.outputs.pop(key, None)
            record.output = None
            record.input = {}
            record.data_removed = True

    def expire(self, retention_seconds: float, now: float) -> None:
        with self.lock:
            for record in list(self.predictions.values()):
                done_at = record.completed_at
                expired = done_at is not None and done_at + retention_seconds <= now
                if record.terminal and not record.data_removed and expired:
                    self.remove_data(record)
            for file_id, file in list(self.files.items()):
                if file.expires_at <= now:
                    del self.files[file_id]
