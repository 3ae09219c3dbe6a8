"""The listings API (mounted at /api/v1/listings): create a listing from several photos, read it, export it.

Thin like the jobs API: parse, check permissions (a listing is its jobs, so the jobs' permissions),
call `listings`; domain errors are answered by `api.errors` (a bad photo is a 422 item at
`["body", "images", i]`, and nothing is stored).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest, StreamingHttpResponse
from django.utils.text import slugify
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ValidationError

from api.auth import require_perm
from api.errors import field_error, invalid
from api.schemas import WITH_BODY, error_responses
from models_config.schemas import MAX_ROOM_TYPE_CHARS, Text, field_errors

from . import gateway, listings, services
from .api import job_out
from .models import Listing
from .schemas import JobFieldsIn, JobOut
from .selectors import CREATE_PERM, VIEW_ALL_PERMS

router = Router(tags=["listings"])  # authenticated by the API root (api/root.py)


class ListingFieldsIn(JobFieldsIn):
    """The fields every photo of the listing shares; `room_type` is the default for photos not given one."""

    name: Text = Field(min_length=1, max_length=200)
    listing: None = Field(None, description="Not accepted here: this creates the listing.")


class ListingOut(Schema):
    id: int
    name: str
    model: str
    style: str
    seed: int | None = Field(description="Shared by every photo, where the model takes a seed.")
    created_at: datetime
    jobs: list[JobOut]


CREATE_LISTING_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "model", "images"],
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "room_types": {
                            "type": "array",
                            "items": {"type": "string", "maxLength": MAX_ROOM_TYPE_CHARS},
                            "description": "One per image, in the same order (empty: `room_type`).",
                        },
                        **{
                            name: prop
                            for name, prop in ListingFieldsIn.model_json_schema()["properties"].items()
                            if name not in ("config", "listing")
                        },
                        "config": {"type": "string", "description": "A JSON object: the config override."},
                    },
                }
            }
        },
    }
}


def _parse(request: HttpRequest) -> tuple[ListingFieldsIn, list[listings.Photo]]:
    """Form fields, the `images` files and their optional parallel `room_types`."""
    if (request.content_type or "").lower() != "multipart/form-data":
        raise invalid(field_error(["body"], "Send multipart/form-data with several `images` files."))
    data = {key: value for key, value in request.POST.items() if value != "" and key != "room_types"}
    files = request.FILES.getlist("images")
    room_types = request.POST.getlist("room_types")
    errors: list[dict[str, Any]] = []
    if not files:
        errors.append(field_error(["body", "images"], "Attach at least one photo as an `images` file.", "missing"))
    if room_types and len(room_types) != len(files):
        errors.append(
            field_error(["body", "room_types"], f"Give one room type per image ({len(files)}), or none at all.")
        )
    for index, room_type in enumerate(room_types):
        if len(room_type) > MAX_ROOM_TYPE_CHARS:
            errors.append(field_error(["body", "room_types", index], f"At most {MAX_ROOM_TYPE_CHARS} characters."))
    if "config" in data:
        try:
            data["config"] = json.loads(data["config"])
        except (ValueError, RecursionError):
            del data["config"]
            errors.append(field_error(["body", "config"], "Not valid JSON: send the config override as a JSON object."))
    fields = None
    try:
        fields = ListingFieldsIn.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, ("body",)) + errors
    if errors or fields is None:
        raise invalid(*errors)
    photos = [
        listings.Photo(file, (room_types[index] if room_types else "") or fields.room_type)
        for index, file in enumerate(files)
    ]
    return fields, photos


def _listing_out(request: HttpRequest, listing: Listing) -> dict[str, Any]:
    return {
        "id": listing.pk,
        "name": listing.name,
        "model": listing.model_slug,
        "style": listing.style,
        "seed": listing.seed,
        "created_at": listing.created_at,
        "jobs": [job_out(request, job.pk) for job in listings.jobs_of(listing)],
    }


def _existing(listing_id: int) -> Listing:
    listing = Listing.objects.filter(pk=listing_id).first()
    if listing is None:
        raise HttpError(404, f"No listing {listing_id}.")
    return listing


@router.post(
    "",
    response={201: ListingOut, **error_responses(*WITH_BODY, 503)},
    summary="Create a listing: one staging job per photo, all in the same style and model",
    openapi_extra=CREATE_LISTING_OPENAPI,
)
def create_listing(request: HttpRequest) -> Status:
    user = require_perm(request, CREATE_PERM)
    fields, photos = _parse(request)
    gateway.require_configured()
    listing = listings.create_listing(
        fields.name,
        fields.model,
        photos,
        style=fields.style,
        instructions=fields.instructions,
        seed=fields.seed,
        config_override=fields.config,
        created_by=user,
        policy=services.OverridePolicy.of(user),
    )
    return Status(201, _listing_out(request, listing))


@router.get("/{int:listing_id}", response={200: ListingOut, **error_responses(404)}, summary="A listing and its jobs")
def get_listing(request: HttpRequest, listing_id: int) -> dict[str, Any]:
    require_perm(request, *VIEW_ALL_PERMS)
    return _listing_out(request, _existing(listing_id))


@router.get(
    "/{int:listing_id}/export",
    response=error_responses(404, 422),
    url_name="listing-export",
    summary="A zip of every staged photo beside its original, with a manifest of what was altered",
    openapi_extra={"responses": {200: {"description": "A zip file.", "content": {"application/zip": {"schema": {}}}}}},
)
def export(request: HttpRequest, listing_id: int, label: Literal["none", "default"] = "none") -> StreamingHttpResponse:
    """`label=default` puts the disclosure label on every staged photo (docs/architecture.md#disclosure-labels);
    `none` exports them clean (for an MLS that bans marks on photos). Originals are always there."""
    require_perm(request, *VIEW_ALL_PERMS)
    listing = _existing(listing_id)
    response = StreamingHttpResponse(
        listings.stream_export(listing, labelled=label == "default"), content_type="application/zip"
    )
    filename = f"listing-{listing.pk}-{slugify(listing.name) or 'photos'}{'-labelled' if label == 'default' else ''}"
    response["Content-Disposition"] = f'attachment; filename="{filename}.zip"'
    return response
