"""`Emulator`: the Python API other code (tests, the demo, benchmarks) drives the emulator through."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Self
from urllib.parse import urlsplit

from models_config.registry import ModelSpec

from .app import App
from .faults import Faults
from .lifecycle import Lifecycle
from .server import EmulatorHTTPServer
from .store import PredictionRecord, Store, version_id
from .webhooks import WebhookSender, new_secret, secret_bytes

log = logging.getLogger("replicate_emulator")


class Emulator:
    """A local stand-in for the Replicate HTTP API; see the package docstring for the surface."""

    def __init__(
        self,
        api_token: str = "r8_emulator",
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.2,
        jitter: float = 0.0,
        retention_seconds: float = 3600,
        webhook_secret: str | None = None,
        *,
        workers: int = 16,
        webhook_retries: int = 3,
        webhook_backoff: float = 0.2,
        file_ttl_seconds: float = 86400,
        public_url: str | None = None,
        seed: int | None = None,
        faults: dict[str, Any] | None = None,
    ) -> None:
        if not api_token:
            raise ValueError("api_token must not be empty")
        self.api_token = api_token
        self.webhook_secret = webhook_secret or new_secret()
        secret_bytes(self.webhook_secret)  # fail early on a malformed secret
        self.retention_seconds = float(retention_seconds)
        self.file_ttl = float(file_ttl_seconds)
        self.faults = Faults(latency=latency, jitter=jitter, seed=seed)
        self._initial_faults = dict(faults or {})
        self.faults.configure(**self._initial_faults)
        self.store = Store()
        self._host, self._port, self._public_url = host, port, public_url
        self._workers = workers
        self._webhook_opts = {"retries": webhook_retries, "backoff": webhook_backoff}
        self._server: EmulatorHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.sender = WebhookSender(
            key=secret_bytes(self.webhook_secret), faults=self.faults, store=self.store, **self._webhook_opts
        )
        self.lifecycle = Lifecycle(
            store=self.store,
            faults=self.faults,
            sender=self.sender,
            base_url=lambda: self.base_url,
            local_bytes=self._local_bytes,
            workers=workers,
        )

    # --- running ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in background threads; returns self."""
        if self._server is not None:
            return self
        self._server = EmulatorHTTPServer((self._host, self._port), App(self))
        self._stopping.clear()
        serve = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="emu-http", daemon=True
        )
        janitor = threading.Thread(target=self._janitor, name="emu-janitor", daemon=True)
        self._threads = [serve, janitor]
        for thread in self._threads:
            thread.start()
        log.info("Replicate emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving; running predictions are abandoned (their worker threads exit promptly)."""
        self._stopping.set()
        with self.store.lock:
            for record in self.store.predictions.values():
                record.cancel_requested.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.lifecycle.close()
        self.sender.close()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def base_url(self) -> str:
        if self._public_url:
            return self._public_url.rstrip("/")
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def _janitor(self) -> None:
        """Applies the data-retention rule; ticks often enough for short test retentions."""
        interval = min(1.0, max(0.02, self.retention_seconds / 5))
        while not self._stopping.wait(interval):
            self.store.expire(self.retention_seconds, time.time())

    # --- state --------------------------------------------------------------------------------

    def create_record(
        self, spec: ModelSpec, model_input: dict[str, Any], webhook: str | None, events: list[str] | None
    ) -> PredictionRecord:
        """Create, count and schedule one prediction (input already validated)."""
        fate = None
        if self.faults.take("moderate"):
            fate = "moderate"
        elif self.faults.take("fail_predictions"):
            fate = self.faults.get("fail_error")
        record = self.store.add_prediction(
            model=spec.ref,
            version=version_id(spec.ref),
            input=model_input,
            webhook=webhook,
            events_filter=events,
            fate=fate,
        )
        self.faults.record_create()
        self.lifecycle.submit(record)
        return record

    def prediction_json(self, record: PredictionRecord) -> dict[str, Any]:
        with self.store.lock:
            return record.to_json(self.base_url)

    def _local_bytes(self, url: str) -> bytes | None:
        """Serve our own file and output URLs from memory (no self-HTTP, works for any host alias)."""
        split = urlsplit(url)
        own = urlsplit(self.base_url)
        if split.port != own.port or split.hostname not in {own.hostname, "localhost", "127.0.0.1", "::1"}:
            return None
        parts = split.path.strip("/").split("/")
        with self.store.lock:
            if len(parts) == 4 and parts[:2] == ["v1", "files"] and parts[3] == "download":
                file = self.store.files.get(parts[2])
                return file.content if file else _missing(url)
            if len(parts) == 4 and parts[:2] == ["files", "outputs"]:
                found = self.store.outputs.get(f"{parts[2]}/{parts[3]}")
                return found[0] if found else _missing(url)
        return None

    # --- the public API -----------------------------------------------------------------------

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Merge fault settings (names as the CLI flags, with underscores); returns the full set."""
        return self.faults.configure(**faults)

    def clear_faults(self) -> None:
        self.faults.reset()

    def counters(self) -> dict[str, Any]:
        return {**self.store.counters(), "faults_injected": self.faults.injected_snapshot()}

    def creates_for_token(self, token: str) -> int:
        return self.store.counters()["creates_by_token"].get(token, 0)

    def get_prediction(self, prediction_id: str) -> dict[str, Any] | None:
        record = self.store.predictions.get(prediction_id)
        return self.prediction_json(record) if record else None

    def wait_for_prediction(self, prediction_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """Block until the prediction is terminal (or the timeout); returns its JSON."""
        record = self.store.predictions.get(prediction_id)
        if record is None:
            return None
        record.done.wait(timeout)
        return self.prediction_json(record)

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook message is delivered or given up."""
        return self.sender.wait_idle(timeout)

    def reset(self) -> None:
        """Forget predictions, files, counters and faults (back to the constructor's settings)."""
        with self.store.lock:
            for record in self.store.predictions.values():
                record.cancel_requested.set()
            self.store.clear()
        self.faults.reset()
        self.faults.configure(**self._initial_faults)


def _missing(url: str) -> bytes:
    from .imaging import InputImageError

    raise InputImageError(f"Failed to fetch input image {url!r}: HTTP 404")
