"""The prediction lifecycle: starting -> processing -> succeeded | failed | canceled.

Each prediction spends ~20% of its latency in `starting` (queue time) and the rest in `processing`,
where the input is really fetched and decoded and the outputs are rendered; the result is published
at the deadline. Steps are timer-driven (see `scheduler`), cancellation is checked at every step, and
every transition happens under the store lock so a late step never overwrites a cancel.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from models_config.registry import BY_REF, OutputShape

from . import imaging
from .faults import E005, Faults
from .scheduler import Scheduler
from .store import ALL_EVENTS, PredictionRecord, Store
from .webhooks import WebhookSender

log = logging.getLogger("replicate_emulator.lifecycle")
STARTING_SHARE = 0.2


class Lifecycle:
    """Runs predictions on a thread pool and emits their webhooks."""

    def __init__(
        self,
        *,
        store: Store,
        faults: Faults,
        sender: WebhookSender,
        base_url: Callable[[], str],
        local_bytes: Callable[[str], bytes | None],
        workers: int = 16,
    ) -> None:
        self._store = store
        self._faults = faults
        self._sender = sender
        self._base_url = base_url
        self._local_bytes = local_bytes
        self._scheduler = Scheduler(workers)
        self._http = httpx.Client()

    def submit(self, record: PredictionRecord) -> None:
        """Schedule a new prediction; ~20% of its latency is spent `starting` (queue time)."""
        total = self._faults.processing_seconds()
        self._scheduler.call_later(total * STARTING_SHARE, self._safely, self._start, record, total)

    def close(self) -> None:
        self._scheduler.close()
        self._http.close()

    # --- transitions --------------------------------------------------------------------------

    def emit(self, record: PredictionRecord, event: str) -> None:
        """Send `event` for `record` if it has a webhook and its filter includes the event."""
        if not record.webhook or event not in (record.events_filter or ALL_EVENTS):
            return
        with self._store.lock:
            body = json.dumps(record.to_json(self._base_url()))
        self._sender.emit(record.id, record.webhook, body, event)

    def finish(self, record: PredictionRecord, status: str, *, error: str | None = None, output: Any = None) -> bool:
        """Move to a terminal status unless already terminal; returns whether this call did it."""
        with self._store.lock:
            if record.terminal:
                return False
            now = time.time()
            record.status = status
            record.error = error
            if output is not None:
                record.output = output
            record.completed_at = now
            if record.started_at is not None:
                record.predict_time = round(now - record.started_at, 6)
            record.logs += {
                "succeeded": "Prediction succeeded\n",
                "failed": f"Prediction failed: {error}\n",
                "canceled": "Prediction canceled\n",
            }[status]
        self.emit(record, "completed")
        record.done.set()  # after queueing the webhook, so wait_for_prediction + wait_for_webhooks see it
        return True

    def cancel(self, record: PredictionRecord) -> None:
        record.cancel_requested.set()
        self.finish(record, "canceled")

    # --- the steps (each runs on the scheduler's pool; waiting in between holds no thread) ------

    def _live(self, record: PredictionRecord) -> bool:
        return not record.cancel_requested.is_set() and not record.terminal

    def _safely(self, step: Callable[..., None], record: PredictionRecord, *args: Any) -> None:
        try:
            step(record, *args)
        except Exception as exc:  # a bug in the emulator must still end the prediction
            log.exception("prediction %s crashed", record.id)
            self.finish(record, "failed", error=f"Emulator internal error: {exc}")

    def _start(self, record: PredictionRecord, total: float) -> None:
        """starting -> processing, then do the real work now and complete at the deadline."""
        with self._store.lock:
            if not self._live(record):
                return
            record.status = "processing"
            record.started_at = time.time()
            record.logs += "Starting prediction\n"
        self.emit(record, "start")
        deadline = time.monotonic() + total * (1 - STARTING_SHARE)

        spec = BY_REF[record.model]
        validated = spec.input_schema.model_validate(record.input)
        full_input = validated.model_dump(mode="json")
        try:
            source, source_key = self._load_inputs(spec.image_urls(full_input))
        except imaging.InputImageError as exc:
            self.finish(record, "failed", error=str(exc))
            return
        with self._store.lock:
            record.logs += f"Loaded input image {source.width}x{source.height}\n"
        self.emit(record, "logs")

        if record.fate is not None:
            error = E005 if record.fate == "moderate" else record.fate
            self._scheduler.call_at(deadline, self._safely, self._fail, record, error)
            return
        outputs = self._render(record, source, source_key, full_input, count=spec.output_count(validated))
        single = spec.output_shape == OutputShape.SINGLE
        self._scheduler.call_at(deadline, self._safely, self._complete, record, outputs, single)

    def _fail(self, record: PredictionRecord, error: str) -> None:
        if self._live(record):
            self.finish(record, "failed", error=error)

    def _complete(self, record: PredictionRecord, outputs: list[tuple[bytes, str, str]], single: bool) -> None:
        output = self._publish(record, outputs, single=single)
        if output is None:
            return
        self.emit(record, "output")
        self.finish(record, "succeeded", output=output)

    def _load_inputs(self, urls: list[str]) -> tuple[Any, str]:
        """Fetch and decode every input image (all must be valid); returns the first (restyled) and its digest."""
        first: tuple[Any, str] | None = None
        for url in urls:
            data = imaging.fetch_bytes(url, self._local_bytes, self._http)
            image = imaging.decode(data, url)
            first = first or (image, imaging.digest(data))
        return first or (imaging.placeholder(), "placeholder")

    def _render(
        self, record: PredictionRecord, source: Any, source_key: str, full_input: dict[str, Any], *, count: int
    ) -> list[tuple[bytes, str, str]]:
        fmt = str(full_input.get("output_format") or "jpg")
        aspect = full_input.get("aspect_ratio")
        quality = int(full_input.get("output_quality") or 90)
        ext = "jpg" if fmt == "jpeg" else fmt
        label = record.model.split("/")[-1][:10]
        rendered = []
        for index in range(count):
            data, content_type = imaging.render(
                source, fmt=fmt, index=index, label=label, aspect_ratio=aspect, quality=quality, source_key=source_key
            )
            rendered.append((data, content_type, f"{index}.{ext}"))
        return rendered

    def _publish(
        self, record: PredictionRecord, outputs: list[tuple[bytes, str, str]], *, single: bool
    ) -> str | list[str] | None:
        """Store the output files and set `output` in the model's shape (still processing); None if canceled."""
        base = self._base_url()
        with self._store.lock:
            if record.terminal or record.cancel_requested.is_set():
                return None
            urls = []
            for data, content_type, name in outputs:
                key = f"{record.id}/{name}"
                self._store.outputs[key] = (data, content_type)
                record.output_keys.append(key)
                urls.append(f"{base}/files/outputs/{key}")
            record.output = urls[0] if single else urls
            record.logs += f"Generated {len(urls)} image(s)\n"
            return record.output
