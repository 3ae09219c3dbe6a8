"""Request and response schemas of the jobs API (`staging/api.py`).

Outputs list only what a client needs to follow a job: never an attempt's webhook token, the exact
Replicate input (it can hold a signed storage URL) or anything else that works as a credential.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from ninja import Schema
from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE
from models_config.registry import REGISTRY, UnknownModelError, get_spec
from models_config.schemas import MAX_INSTRUCTIONS_CHARS, MAX_ROOM_TYPE_CHARS, MAX_SEED, MAX_STYLE_CHARS, Text

from .models import JobStatus

MAX_PAGE_SIZE = 100


def _registered(slug: str) -> str:
    """A field error for a slug no registry line names, so it is refused with the request's other fields.

    `get_spec` is the rule; this only turns its `UnknownModelError` into pydantic's error for the field.
    """
    try:
        get_spec(slug)
    except UnknownModelError as exc:
        raise PydanticCustomError("value_error", "{reason}", {"reason": str(exc)}) from None
    return slug


class JobFieldsIn(Schema):
    """The job parameters, the same for an upload (form fields) and a JSON body."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, AfterValidator(_registered)] = Field(
        min_length=1,
        max_length=100,
        description="A registered model slug, e.g. flux-kontext-pro.",
        json_schema_extra={"enum": list(REGISTRY)},  # documented from the registry, refused by `_registered`
    )
    room_type: Text = Field(DEFAULT_ROOM_TYPE, max_length=MAX_ROOM_TYPE_CHARS)
    style: Text = Field(DEFAULT_STYLE, max_length=MAX_STYLE_CHARS)
    instructions: Text = Field("", max_length=MAX_INSTRUCTIONS_CHARS, description="Free text added to the prompt.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Used unless the config sets its own seed.")
    config: dict[str, Any] | None = Field(
        None, description="A partial config override for this job; keys left out take the active version's values."
    )
    listing: int | None = Field(
        None, ge=1, description="A listing's id: the job takes its style and seed, and must use its model."
    )


def _aware(moment: datetime | None) -> datetime | None:
    """The moment in UTC; a time without a zone is UTC (the service's time zone), as in the rest of the API.

    Converted here because ISO 8601 admits offsets (up to ±23:59) that PostgreSQL refuses (past ±15:59).
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("value_error", "the time is out of range") from None


Moment = Annotated[datetime | None, AfterValidator(_aware)]


class JobListQuery(Schema):
    """The filters and page of `GET /jobs`; a bad value is a 422 naming its parameter."""

    status: JobStatus | None = Field(None, description="The job's derived status.")
    model: Annotated[str, AfterValidator(_registered)] | None = Field(
        None, max_length=100, description="A registered model slug.", json_schema_extra={"enum": list(REGISTRY)}
    )
    listing: int | None = Field(None, ge=1, description="Only the photos of this listing.")
    since: Moment = Field(None, description="Created at or after (ISO 8601; a date means its midnight UTC).")
    until: Moment = Field(None, description="Created before (ISO 8601; a date means its midnight UTC).")
    page: int = Field(1, ge=1, description="1-based; a page past the last one has no items.")
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("until")
    @classmethod
    def _until_after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if since is not None and until is not None and until <= since:
            raise PydanticCustomError("value_error", "until must be later than since")
        return until


class JobJsonIn(JobFieldsIn):
    """`application/json`: the photo is downloaded from `image_url` (public http/https only)."""

    image_url: str = Field(min_length=1, max_length=2000)


class ReprocessIn(Schema):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(
        None,
        description="Replaces the job's stored override for this and later attempts ({} clears it); "
        "omit to keep the stored one.",
    )


class OutputOut(Schema):
    index: int
    attempt: int = Field(description="The number of the attempt that made it.")
    chosen: bool = Field(description="Whether staff chose this output as the one to deliver.")
    url: str
    thumbnail_url: str | None = Field(description="The thumbnail derivative's URL; null when it was not made.")
    derivatives: dict[str, str] = Field(description="URL of each derivative made from the clean file, by kind.")
    content_type: str
    width: int
    height: int
    size: int
    checksum: str = Field(description="SHA-256 of the stored file.")


class AttemptOut(Schema):
    number: int
    state: str
    error: str
    error_class: str
    held_reason: str = Field(default="", description="Why the attempt waits as held (a spend cap); empty otherwise.")
    held_at: datetime | None = None
    config_version: int | None = Field(description="The config version number used; null for code defaults.")
    config_source: str
    arm: str = Field(description="'active', or 'candidate' when a canary sent the job to its candidate version.")
    prediction_id: str | None
    predict_time: float | None
    cost: float | None = Field(description="USD, known once the attempt succeeded.")
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    outputs: list[OutputOut] = Field([], description="The files this attempt stored.")


class PhotoOut(Schema):
    url: str
    width: int
    height: int


class JobSummaryOut(Schema):
    """A job in a list: what a row shows, read without a query per row (`GET /jobs/{id}` has the rest)."""

    id: int
    uid: UUID
    url: str = Field(description="The job's own URL: its attempts and outputs.")
    status: str = Field(description="queued, running, succeeded, failed or canceled (from the latest attempt).")
    model: str
    room_type: str
    style: str
    listing: int | None = Field(description="The listing the photo belongs to, if any.")
    created_by: str | None = Field(description="Username of who created it; null from a command.")
    created_at: datetime
    updated_at: datetime


class JobPageOut(Schema):
    items: list[JobSummaryOut]
    count: int = Field(description="Jobs matching the filters, on every page.")
    page: int
    pages: int = Field(description="Pages of page_size; 0 when nothing matches.")


class JobOut(Schema):
    id: int
    uid: UUID
    status: str = Field(description="queued, running, succeeded, failed or canceled (from the latest attempt).")
    model: str
    room_type: str
    style: str
    instructions: str
    seed: int | None
    config_override: dict[str, Any] | None
    listing: int | None = Field(description="The listing the photo belongs to, if any.")
    photo: PhotoOut
    created_by: str | None = Field(description="Username of who created it; null from a command.")
    created_at: datetime
    updated_at: datetime
    attempts: list[AttemptOut]
    outputs: list[OutputOut] = Field(
        description="Stored files of the delivering attempt: the one holding the chosen output, else the latest "
        "succeeded one (`GET /jobs/{id}/outputs/{n}` serves these by index)."
    )
    chosen: OutputOut | None = Field(
        description="The output to deliver: the one staff chose, else the latest succeeded attempt's first; "
        "null while nothing is stored."
    )
    chosen_by_staff: bool = Field(description="Whether `chosen` was picked by staff rather than by default.")


# The two request bodies `POST /jobs` accepts, for the OpenAPI document (the handler parses them itself).
_FIELDS = JobFieldsIn.model_json_schema()["properties"]
CREATE_JOB_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "model"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP."},
                        **{name: prop for name, prop in _FIELDS.items() if name != "config"},
                        "config": {"type": "string", "description": "A JSON object: the config override."},
                    },
                }
            },
            "application/json": {"schema": JobJsonIn.model_json_schema()},
        },
    }
}
REPROCESS_OPENAPI: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/json": {"schema": ReprocessIn.model_json_schema()}}}
}
