"""Replicate's prediction JSON, parsed once at the edge into a typed `Prediction` (docs/replicate.md).

Every prediction the service reads (a create's answer, a read, a list page, a webhook body) goes through
`Prediction.from_json`, through the strict pydantic `PredictionJson`: a field of the wrong type is refused
with a `GatewayError` naming it, so the pipeline never handles a raw dict. `gateway` makes the calls;
this module only says what an answer means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .errors import TRANSIENT, GatewayError


class PredictionStatus(StrEnum):
    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    ABORTED = "aborted"  # ended before it started (e.g. a deadline); the client's own model cannot parse it


def _storable(value: str) -> str:
    """Text the database can store: PostgreSQL refuses NUL, and no driver encodes an unpaired surrogate
    (JSON's `"\\ud800"`). A prediction carrying either is refused whole, before anything is written."""
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise PydanticCustomError("string_unicode", "must not contain unpaired surrogates") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]


class PredictionMetrics(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    predict_time: float | None = Field(None, ge=0, allow_inf_nan=False)


class PredictionJson(BaseModel):
    """The wire shape of a prediction: the one parser of every prediction JSON (create, read, list, webhook).

    Strict, so a field of the wrong type is refused instead of coerced (`"status": ["x"]`,
    `"metrics": {"predict_time": "1"}`, a numeric `id`); fields this code does not read are ignored, and
    an unknown status string is kept (`Prediction.status` is None for it). The id is bounded by the
    column it is stored in (`Attempt.prediction_id`).
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    id: Text = Field(min_length=1, max_length=64)
    status: Text
    output: Any = None  # one URL or a list of URLs: every registered model's shape (`_urls`)
    error: Text | None = None
    metrics: PredictionMetrics | None = None
    data_removed: bool = False
    webhook: Text | None = None
    model: Text | None = None
    input: dict[str, Any] | None = None
    created_at: AwareDatetime | None = Field(None, strict=False)  # an ISO 8601 string on the wire

    @field_validator("output")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        """Checked by hand so an error names `output` itself, not the members of a union."""
        urls = value if isinstance(value, list) else [value] if value is not None else []
        if not all(isinstance(url, str) for url in urls):
            raise PydanticCustomError("url_type", "must be a URL or a list of URLs")
        for url in urls:
            _storable(url)
        return value


def _shape_problems(exc: ValidationError) -> str:
    """What is wrong, field by field, without the values (a webhook URL carries an attempt token)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())


@dataclass(frozen=True)
class Prediction:
    """A prediction as Replicate describes it; `status` is None for a status this code does not know."""

    id: str
    status: PredictionStatus | None
    raw_status: str = ""
    output: Any = None  # one URL or a list of URLs (the model's output shape), None until it succeeded
    error: str | None = None
    predict_time: float | None = None
    data_removed: bool = False  # outputs deleted (an hour after completion)
    webhook: str = ""
    model: str = ""
    input: dict[str, Any] | None = None
    created_at: datetime | None = None

    @classmethod
    def from_json(cls, data: Any) -> Prediction:
        """Parse a prediction JSON through `PredictionJson`; `GatewayError` (transient) names what is wrong."""
        try:
            wire = PredictionJson.model_validate(data)
        except ValidationError as exc:
            raise GatewayError(f"Not a Replicate prediction object: {_shape_problems(exc)}.", TRANSIENT) from None
        try:
            status: PredictionStatus | None = PredictionStatus(wire.status)
        except ValueError:
            status = None
        return cls(
            id=wire.id,
            status=status,
            raw_status=wire.status,
            output=wire.output,
            error=wire.error,
            predict_time=wire.metrics.predict_time if wire.metrics else None,
            data_removed=wire.data_removed,
            webhook=wire.webhook or "",
            model=wire.model or "",
            input=wire.input,
            created_at=wire.created_at,
        )

    @property
    def running(self) -> bool:
        return self.status in (PredictionStatus.STARTING, PredictionStatus.PROCESSING)
