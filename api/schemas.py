"""The shapes of the API's error answers, for the OpenAPI document and for `errors` to build them with.

Every error is `{"detail": ...}`: a message, or for 422 a list of `{loc, msg, type}` in ninja's own
shape, so a client parses a refused field the same way whether ninja or a service refused it.
"""

from __future__ import annotations

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
