"""The shapes of the API's error answers, for the OpenAPI document and for `errors` to build them with.

Every error is `{"detail": ...}`: a message, or for 422 a list of `{loc, msg, type}` in ninja's own
shape, so a client parses a refused field the same way whether ninja or a service refused it.
`error_responses` declares them on each operation, so the OpenAPI document lists every status an
operation can answer with its body (tests/api/test_openapi.py runs schemathesis against it).
"""

from __future__ import annotations

from typing import Any

from ninja import Schema
from pydantic import Field


class ErrorOut(Schema):
    detail: str


class FieldErrorOut(Schema):
    loc: list[str | int] = Field(description='Where: ["body", field, ...] (config paths continue the list).')
    msg: str
    type: str


class ValidationErrorOut(Schema):
    detail: list[FieldErrorOut]


class ConflictOut(Schema):
    """409 for a config saved or activated over a version someone else activated meanwhile."""

    detail: str
    active_version: int | None
    active_author: str | None
    active_comment: str | None


# What each error status means, for the OpenAPI document (docs/architecture.md#api).
ERROR_DESCRIPTIONS = {
    400: "Malformed: the body is not JSON, or a multipart body cannot be read.",
    401: "No credentials, or a bad token.",
    403: "Not staff, missing permission, or (session) the CSRF check failed: the message says which.",
    404: "Unknown path, model, version or job.",
    409: "Conflict with the current state.",
    413: "The body is over DATA_UPLOAD_MAX_MEMORY_SIZE (a multipart file does not count).",
    422: "Invalid: one {loc, msg, type} per refused field; nothing was stored.",
    429: "Rate limited: retry after the Retry-After header's seconds.",
    503: "Replicate is not configured: no work can start.",
}
_BODIES: dict[int, type[Schema]] = {422: ValidationErrorOut}
ALWAYS = (401, 403, 429)  # every operation is authenticated, checks a permission and is rate limited
WITH_BODY = (400, 413, 422)  # every operation that reads a request body


def error_responses(*statuses: int, conflict: type[Schema] = ErrorOut) -> dict[int, type[Schema]]:
    """`response=` entries of an operation's error answers: `statuses` plus `ALWAYS`, each with its body.

    `conflict` is the body of its 409 (`ConflictOut` where a config version won a race).
    """
    bodies = {**_BODIES, 409: conflict}
    return {status: bodies.get(status, ErrorOut) for status in sorted({*ALWAYS, *statuses})}


def describe_errors_in(document: dict[str, Any]) -> dict[str, Any]:
    """Give every error response of an OpenAPI document its meaning (ninja only writes the status phrase)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if int(status) in ERROR_DESCRIPTIONS:
                    response["description"] = ERROR_DESCRIPTIONS[int(status)]
    return document
