"""The request handlers: Replicate's HTTP API subset plus the emulator's `/_emulator` control plane.

Kept free of socket code (handlers map a `Request` to a `Response`) so the routing, auth and fault
order are easy to read in one place. Fault order on create: auth, rate limit and injected create
faults (like a real front door that throttles before it parses), then model lookup and validation.
The handlers see the emulator only through `EmulatorState`, so this module never imports `emulator`
(which imports it).
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from models_config.registry import BY_REF, ModelSpec

from . import openapi
from .faults import COUNT_KINDS, Faults
from .lifecycle import Lifecycle
from .store import ALL_EVENTS, FileRecord, PredictionRecord, Store, new_id, version_id

PAGE_SIZE = 100
MAX_WAIT = 60


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (drop_after_create)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), headers=headers or {})


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    return json_response(status, {"title": title, "detail": detail, "status": status, **extra})


class ApiError(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class EmulatorState(Protocol):
    """What the handlers use of the emulator; `emulator.Emulator` provides it."""

    api_token: str
    webhook_secret: str
    file_ttl: float
    faults: Faults
    store: Store
    lifecycle: Lifecycle

    @property
    def base_url(self) -> str: ...

    def create_record(
        self, spec: ModelSpec, model_input: dict[str, Any], webhook: str | None, events: list[str] | None
    ) -> PredictionRecord: ...

    def prediction_json(self, record: PredictionRecord) -> dict[str, Any]: ...

    def set_faults(self, **faults: Any) -> dict[str, Any]: ...

    def counters(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...


Handler = Callable[["App", Request, re.Match[str]], Response]
ROUTES: list[tuple[str, re.Pattern[str], bool, str]] = []  # (method, pattern, needs auth, handler name)


def route(method: str, pattern: str, *, auth: bool = True) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), auth, func.__name__))
        return func

    return register


class App:
    """Dispatches requests against one emulator's state."""

    def __init__(self, emulator: EmulatorState) -> None:
        self.emu = emulator

    def handle(self, request: Request) -> Response:
        allowed = []
        for method, pattern, auth, name in ROUTES:
            match = pattern.match(request.path)
            if not match:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            try:
                if auth:
                    self._authenticate(request)
                return getattr(self, name)(request, match)
            except ApiError as exc:
                return exc.response
        if allowed:
            return problem(405, "Method not allowed", f"Use {', '.join(allowed)} for {request.path}.")
        return problem(404, "Not found", f"No route for {request.method} {request.path}.")

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not hmac.compare_digest(
            token.strip().encode(), self.emu.api_token.encode()
        ):
            raise ApiError(problem(401, "Unauthenticated", "You did not pass a valid authentication token"))

    def _json_body(self, request: Request) -> dict[str, Any]:
        try:
            data = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise ApiError(problem(400, "Invalid JSON", f"The request body is not valid JSON: {exc}")) from None
        if not isinstance(data, dict):
            raise ApiError(problem(400, "Invalid JSON", "The request body must be a JSON object."))
        return data

    # --- predictions --------------------------------------------------------------------------

    @route("POST", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions")
    def create_by_model(self, request: Request, match: re.Match[str]) -> Response:
        fault = self._create_faults()
        if fault is not None:
            return fault
        ref = f"{match['owner']}/{match['name']}"
        spec = BY_REF.get(ref)
        if spec is None:
            return problem(404, "Not found", f"The requested model {ref} does not exist or is not accessible.")
        return self._create(request, spec, self._json_body(request))

    @route("POST", r"/v1/predictions")
    def create_by_version(self, request: Request, match: re.Match[str]) -> Response:
        fault = self._create_faults()
        if fault is not None:
            return fault
        body = self._json_body(request)
        version = str(body.get("version") or "")
        ref, _, vid = version.partition(":")
        spec = BY_REF.get(ref) if ref in BY_REF and (not vid or vid == version_id(ref)) else None
        spec = spec or next((s for s in BY_REF.values() if version_id(s.ref) == version), None)
        if spec is None:
            return problem(
                422,
                "Invalid version or not permitted",
                "The specified version does not exist (or perhaps you don't have permission to use it?)",
            )
        return self._create(request, spec, body)

    def _create_faults(self) -> Response | None:
        faults = self.emu.faults
        reset = faults.rate_limited()
        if reset is not None:
            faults.note("create_rate_limit")
            return self._throttled(reset)
        if faults.take("create_429"):
            return self._throttled(int(faults.get("throttle_reset_seconds")))
        if faults.take("create_500"):
            return problem(500, "Internal Server Error", "Internal server error (emulated fault).")
        if faults.take("create_503"):
            return problem(503, "Service Unavailable", "Service temporarily unavailable (emulated fault).")
        return None

    @staticmethod
    def _throttled(reset: int) -> Response:
        return problem(429, "Too Many Requests", f"Request was throttled. Your rate limit resets in ~{reset}s.")

    def _create(self, request: Request, spec: ModelSpec, body: dict[str, Any]) -> Response:
        model_input = body.get("input")
        if not isinstance(model_input, dict):
            return _invalid([{"type": "required", "field": "input", "description": "input is required"}])
        try:
            spec.input_schema.model_validate(model_input)
        except ValidationError as exc:
            return _invalid(
                [
                    {
                        "type": err["type"],
                        "field": ".".join(["input", *map(str, err["loc"])]),
                        "description": err["msg"],
                    }
                    for err in exc.errors()
                ]
            )
        webhook, events = body.get("webhook"), body.get("webhook_events_filter")
        if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))):
            return _invalid([{"type": "format", "field": "webhook", "description": "webhook must be an http(s) URL"}])
        if events is not None and (not isinstance(events, list) or not set(events) <= set(ALL_EVENTS)):
            return _invalid(
                [
                    {
                        "type": "enum",
                        "field": "webhook_events_filter",
                        "description": f"events must be a list of {', '.join(ALL_EVENTS)}",
                    }
                ]
            )
        record = self.emu.create_record(spec, model_input, webhook, events)
        if self.emu.faults.take("drop_after_create"):
            return Response(0, drop=True)
        self._prefer_wait(request, record.done)
        return json_response(201, self.emu.prediction_json(record))

    @staticmethod
    def _prefer_wait(request: Request, done: Any) -> None:
        prefer = (request.headers.get("Prefer") or "").strip()
        if not prefer.startswith("wait"):
            return
        _, _, seconds = prefer.partition("=")
        try:
            timeout = min(int(seconds), MAX_WAIT) if seconds else MAX_WAIT
        except ValueError:
            timeout = MAX_WAIT
        done.wait(timeout)

    @route("GET", r"/v1/predictions")
    def list_predictions(self, request: Request, match: re.Match[str]) -> Response:
        cursor = (request.query.get("cursor") or [""])[0]
        older = newer = None
        if cursor[:1] in ("o", "n") and cursor[1:].isdigit():
            older, newer = (int(cursor[1:]), None) if cursor[0] == "o" else (None, int(cursor[1:]))
        records = self.emu.store.page(older_than=older, newer_than=newer, size=PAGE_SIZE)
        base = f"{self.emu.base_url}/v1/predictions?cursor="
        has_older = bool(records) and bool(self.emu.store.page(older_than=records[-1].seq, newer_than=None, size=1))
        has_newer = bool(records) and bool(self.emu.store.page(older_than=None, newer_than=records[0].seq, size=1))
        return json_response(
            200,
            {
                "next": f"{base}o{records[-1].seq}" if has_older else None,
                "previous": f"{base}n{records[0].seq}" if has_newer else None,
                "results": [self.emu.prediction_json(record) for record in records],
            },
        )

    def _record(self, prediction_id: str) -> Any:
        record = self.emu.store.predictions.get(prediction_id)
        if record is None:
            raise ApiError(problem(404, "Not found", f"Prediction {prediction_id} not found."))
        return record

    @route("GET", r"/v1/predictions/(?P<id>[^/]+)")
    def get_prediction(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self.emu.prediction_json(self._record(match["id"])))

    @route("POST", r"/v1/predictions/(?P<id>[^/]+)/cancel")
    def cancel_prediction(self, request: Request, match: re.Match[str]) -> Response:
        record = self._record(match["id"])
        self.emu.lifecycle.cancel(record)
        return json_response(200, self.emu.prediction_json(record))

    # --- models, files, webhooks --------------------------------------------------------------

    @route("GET", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)")
    def get_model(self, request: Request, match: re.Match[str]) -> Response:
        ref = f"{match['owner']}/{match['name']}"
        spec = BY_REF.get(ref)
        if spec is None:
            return problem(404, "Not found", f"The requested model {ref} does not exist or is not accessible.")
        runs = self.emu.store.counters()["creates_by_model"].get(ref, 0)
        return json_response(200, openapi.model_object(spec, runs))

    @route("POST", r"/v1/files")
    def create_file(self, request: Request, match: re.Match[str]) -> Response:
        parts = _multipart(request)
        content = parts.get("content")
        if content is None:
            return problem(400, "Bad request", "Multipart field 'content' is required.")
        data, filename, part_type = content
        name = _text(parts.get("filename")) or filename or "file"
        content_type = _text(parts.get("type")) or _text(parts.get("content_type")) or part_type
        try:
            metadata = json.loads(_text(parts.get("metadata")) or "{}")
        except ValueError:
            return problem(400, "Bad request", "Multipart field 'metadata' must be JSON.")
        now = time.time()
        record = FileRecord(
            id=new_id(),
            name=name,
            content_type=content_type or "application/octet-stream",
            content=data,
            metadata=metadata,
            created_at=now,
            expires_at=now + self.emu.file_ttl,
        )
        self.emu.store.add_file(record)
        return json_response(201, record.to_json(self.emu.base_url))

    @route("GET", r"/v1/files")
    def list_files(self, request: Request, match: re.Match[str]) -> Response:
        files = sorted(self.emu.store.files.values(), key=lambda f: f.created_at, reverse=True)
        return json_response(
            200, {"next": None, "previous": None, "results": [f.to_json(self.emu.base_url) for f in files]}
        )

    def _file(self, file_id: str) -> FileRecord:
        file = self.emu.store.files.get(file_id)
        if file is None:
            raise ApiError(problem(404, "Not found", f"File {file_id} not found."))
        return file

    @route("GET", r"/v1/files/(?P<id>[^/]+)")
    def get_file(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self._file(match["id"]).to_json(self.emu.base_url))

    @route("DELETE", r"/v1/files/(?P<id>[^/]+)")
    def delete_file(self, request: Request, match: re.Match[str]) -> Response:
        self._file(match["id"])
        self.emu.store.files.pop(match["id"], None)
        return Response(204)

    @route("GET", r"/v1/files/(?P<id>[^/]+)/download", auth=False)
    def download_file(self, request: Request, match: re.Match[str]) -> Response:
        file = self._file(match["id"])
        return Response(200, file.content, content_type=file.content_type)

    @route("GET", r"/files/outputs/(?P<key>[^/]+/[^/]+)", auth=False)
    def download_output(self, request: Request, match: re.Match[str]) -> Response:
        found = self.emu.store.outputs.get(match["key"])
        if found is None:
            return problem(404, "Not found", "Output file not found (it may have been removed).")
        return Response(200, found[0], content_type=found[1])

    @route("GET", r"/v1/webhooks/default/secret")
    def webhook_secret(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, {"key": self.emu.webhook_secret})

    @route("GET", r"/v1/account")
    def account(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(
            200, {"type": "user", "username": "emulator", "name": "Replicate Emulator", "github_url": None}
        )

    # --- control plane ------------------------------------------------------------------------

    @route("GET", r"/_emulator/faults", auth=False)
    def get_faults(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self.emu.faults.snapshot())

    @route("POST", r"/_emulator/faults", auth=False)
    def set_faults(self, request: Request, match: re.Match[str]) -> Response:
        try:
            return json_response(200, self.emu.set_faults(**self._json_body(request)))
        except ValueError as exc:
            return problem(400, "Invalid fault", str(exc))

    @route("GET", r"/_emulator/counters", auth=False)
    def get_counters(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self.emu.counters())

    @route("POST", r"/_emulator/reset", auth=False)
    def reset(self, request: Request, match: re.Match[str]) -> Response:
        self.emu.reset()
        return json_response(200, {"ok": True})

    @route("GET", r"/_emulator/health", auth=False)
    def health(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, {"ok": True, "fault_kinds": list(COUNT_KINDS)})


def _invalid(fields: list[dict[str, str]]) -> Response:
    detail = "\n".join(f"- {f['field']}: {f['description']}" for f in fields)
    return problem(422, "Input validation failed", detail, invalid_fields=fields)


def _multipart(request: Request) -> dict[str, tuple[bytes, str | None, str]]:
    """Parse a multipart/form-data body into name -> (bytes, filename, content type)."""
    content_type = request.headers.get("Content-Type") or ""
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(problem(400, "Bad request", "Expected a multipart/form-data body."))
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + request.body)
    parts: dict[str, tuple[bytes, str | None, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            parts[str(name)] = (payload, part.get_filename(), part.get_content_type())
    return parts


def _text(part: tuple[bytes, str | None, str] | None) -> str:
    return part[0].decode("utf-8", "replace") if part else ""


def parse_target(target: str) -> tuple[str, dict[str, list[str]]]:
    split = urlsplit(target)
    return split.path.rstrip("/") or "/", parse_qs(split.query)
