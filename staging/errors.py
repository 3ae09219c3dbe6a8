"""Errors of the staging pipeline, and the classification of Replicate failures.

Every failure ends up as a message a person can act on plus a class: `transient` (retry with a new
attempt, bounded) or `permanent` (fail now). Messages never contain the API token or a signature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .models import ErrorClass

TRANSIENT = ErrorClass.TRANSIENT
PERMANENT = ErrorClass.PERMANENT

DATA_REMOVED_MESSAGE = (
    "Replicate deleted this prediction's outputs (data_removed, one hour after completion) before they were copied. "
    "Retry the job to run the model again."
)


class StagingError(Exception):
    """Base class: `str(exc)` is meant for the person who asked for the job."""


class ImageRejected(StagingError):
    """The uploaded photo cannot be used; the message says why and what to do."""


class JobInputError(StagingError):
    """Bad job parameters (unknown model, invalid config override, ...). Nothing was stored.

    `errors` are `{loc, msg, type}` items (the shape of `models_config.schemas.field_errors`) whose `loc`
    starts at the job's fields: `["model"]`, `["config"]`, `["config", "image_input", 0]`. A location
    stays the list pydantic reported, never a dotted string parsed back, so a key stays a string
    (`"3"`, `"²"`) and only a list index is an int.
    """

    def __init__(self, message: str, errors: Iterable[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error.get("type", "value_error")}
            for error in errors
        ]

    @classmethod
    def about(cls, field: str, message: str, type_: str = "value_error") -> JobInputError:
        """The error of one job field (`"model"`, `"config"`), the message doubling as the field's."""
        return cls(message, [{"loc": [field], "msg": message, "type": type_}])


class OutputNotFound(StagingError, LookupError):
    """The job, attempt or output index named in a request does not exist (HTTP 404)."""


class JobBusyError(JobInputError):
    """The job still has an attempt in progress: wait for it or cancel it first (HTTP 409)."""


class OverrideNotAllowed(StagingError):
    """A config override sets keys that only someone who may change the model's config may set (HTTP 403).

    `fields` are the refused keys, `allowed` the keys a job's override may set without that permission.
    """

    def __init__(self, slug: str, fields: list[str], allowed: list[str]) -> None:
        self.slug, self.fields, self.allowed = slug, fields, allowed
        super().__init__(
            f"Overriding {', '.join(fields)} needs the permission to change the {slug} configuration "
            f"(models_config.change_modelconfig); without it a job's config override may set only: "
            f"{', '.join(allowed) or 'nothing'}."
        )


class ReplicateNotConfigured(ImproperlyConfigured):
    """No API token: staging refuses to start work."""

    def __init__(self) -> None:
        super().__init__(
            "REPLICATE_API_TOKEN is not set, so staging cannot call Replicate. Either set REPLICATE_API_TOKEN "
            "to a token from https://replicate.com/account/api-tokens, or run the local emulator "
            "(`python manage.py replicate_emulator`) and point REPLICATE_BASE_URL at it with "
            "REPLICATE_API_TOKEN=r8_emulator."
        )


@dataclass
class GatewayError(StagingError):
    """A failed call to Replicate, already classified.

    `ambiguous` is set when a create may have reached Replicate although no answer came back (the
    connection dropped or timed out after the request was sent): the caller must reconcile instead of
    creating again.
    """

    message: str
    error_class: str = PERMANENT
    status: int | None = None
    retry_after: float | None = None
    ambiguous: bool = False

    def __str__(self) -> str:
        return self.message

    @property
    def transient(self) -> bool:
        return self.error_class == TRANSIENT

    @property
    def refused(self) -> bool:
        """Replicate turned the request away (429, 5xx, never connected): nothing was created, so the same
        attempt may simply try again later (docs/architecture.md#refused-creates)."""
        return self.transient and not self.ambiguous


class ListTruncated(GatewayError):
    """Replicate's list of predictions goes on past the pages read: what was looked for may be further back."""


def clamp_wait(seconds: float | None) -> float:
    """A wait in seconds made safe to use: 0 for None, negative or NaN; at most STAGING_MAX_RETRY_AFTER_SECONDS.

    Every wait the pipeline takes from outside (a 429's "~Ns", a Retry-After header) or computes (a
    backoff, a pacer's slot) passes through here, so "~1000000000000000s" means "the maximum", never an
    `OverflowError` from `timedelta` or `time.sleep`.
    """
    limit = max(0.0, float(settings.STAGING_MAX_RETRY_AFTER_SECONDS))
    if seconds is None:
        return 0.0
    try:
        value = float(seconds)
    except OverflowError:  # an int past float's range
        value = math.inf if seconds > 0 else 0.0
    if math.isnan(value) or value <= 0:
        return 0.0
    return min(value, limit)


_WAIT_IN_DETAIL = re.compile(r"~\s*(\d+(?:\.\d+)?)\s*s")


def parse_retry_after(detail: str | None, header: str | None = None) -> float | None:
    """Seconds to wait after a 429, clamped (`clamp_wait`): the `Retry-After` header if numeric, else "~30s"
    in the detail; None when neither names a wait."""
    if header:
        try:
            return clamp_wait(float(header))
        except ValueError:
            pass
    match = _WAIT_IN_DETAIL.search(detail or "")
    return clamp_wait(float(match.group(1))) if match else None


def classify_http_status(status: int, detail: str) -> GatewayError:
    """Replicate answered with an error status. 5xx and 429 are transient, everything else permanent.

    402 (no credit) is permanent for the attempt: retrying within minutes will not add credit, and a
    person must top up the account; `retry_job` afterwards creates a fresh attempt.
    """
    detail = (detail or "").strip()
    if status == 429:
        wait = parse_retry_after(detail)
        return GatewayError(
            f"Replicate rate limit reached ({detail or 'throttled'}); retrying later.",
            TRANSIENT,
            status,
            retry_after=wait,
        )
    if status >= 500:
        message = f"Replicate server error {status} ({detail or 'no detail'}); retrying later."
        return GatewayError(message, TRANSIENT, status)
    hints = {
        400: "Replicate refused the request as malformed",
        401: "Replicate refused the API token (401): check REPLICATE_API_TOKEN",
        402: "The Replicate account has no credit left (402): add credit at https://replicate.com/account/billing, "
        "then retry the job",
        403: "The Replicate token may not use this model (403)",
        404: "Replicate does not know this model or prediction (404)",
        422: "Replicate rejected the model input (422): check the model's configuration",
    }
    hint = hints.get(status, f"Replicate answered {status}")
    return GatewayError(f"{hint}: {detail}" if detail else hint, PERMANENT, status)


# Prediction `error` strings (docs/replicate.md#prediction-errors). Checked in order; unknown errors are permanent.
_TRANSIENT_ERRORS = ("Director: unexpected error", "(code: PA)", "E6716", "E8765", "E9243", "E9828")


def classify_prediction_error(error: str | None) -> tuple[str, str]:
    """(class, message) for a failed prediction's `error` string."""
    text = (error or "").strip() or "no error message"
    if "flagged as sensitive" in text or "E005" in text:
        return PERMANENT, (
            "The model's safety filter flagged the photo or the result as sensitive (E005). "
            "Try a different photo or different instructions."
        )
    if any(marker in text for marker in _TRANSIENT_ERRORS):
        return TRANSIENT, f"Replicate platform error, retrying: {text}"
    return PERMANENT, f"The prediction failed: {text}"
