"""The playground: what a draft config would send for a real photo, and one paid try of it
(docs/architecture.md#the-playground).

It lives in staging, not models_config (which never imports staging): it needs a job's photo and the
pipeline. A try is its own `StagingJob` flagged `is_try`, whose override is the whole draft, so it runs
through the same submit, never-pay-twice and collect path as any job, yet is never a delivered result:
it does not touch the job whose photo it borrowed, and listings and metrics leave tries out by default.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE, StagingRequest
from models_config.registry import get_spec
from models_config.services import ConfigValidationError, validate_config

from . import services, storage
from .models import StagingJob

TRY_PERMISSION = "staging.add_stagingjob"
CONFIG_PERMISSION = "models_config.change_modelconfig"
UPLOAD_PLACEHOLDER = "(a link to the uploaded photo, made when it is stored)"
FILES_API_PLACEHOLDER = "(the photo's Replicate Files API link, made when it is sent)"


@dataclass
class Draft:
    """A draft config and the job parameters it is tried with."""

    slug: str
    config: Any
    room_type: str = DEFAULT_ROOM_TYPE
    style: str = DEFAULT_STYLE
    instructions: str = ""


@dataclass
class PlaygroundPreview:
    """The exact Replicate input and estimated cost of a draft for one photo, or the draft's field errors."""

    replicate_input: dict[str, Any] | None = None
    estimated_cost: Decimal | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def photo_url(job: StagingJob | None) -> str:
    """The photo link the builder gets: the job's signed link as a submit makes it, or a placeholder where
    making the link would itself be a side effect (an upload to the Files API) or needs the photo stored."""
    if job is None:
        return UPLOAD_PLACEHOLDER
    if not settings.STAGING_PUBLIC_URL:
        return FILES_API_PLACEHOLDER
    return storage.public_url(job.sent_photo)


def preview(draft: Draft, job: StagingJob | None) -> PlaygroundPreview:
    """Validate the draft (as a save would) and build the input through the registry, as a submit does.

    Nothing is stored or sent. Errors carry the draft field's `loc` (the input's, prefixed `input`).
    """
    spec = get_spec(draft.slug)
    if not isinstance(draft.config, dict):
        return PlaygroundPreview(errors=[{"loc": [], "msg": "The draft must be a JSON object.", "type": "type"}])
    try:
        config = spec.config_schema.model_validate(validate_config(draft.slug, draft.config, loc_prefix=()))
    except ConfigValidationError as exc:
        return PlaygroundPreview(errors=exc.errors)
    request = StagingRequest(photo_url(job), draft.room_type, draft.style, draft.instructions, None)
    try:
        built = spec.build_input(request, config)
    except ValueError as exc:  # pydantic's ValidationError: the real model would refuse this input
        return PlaygroundPreview(errors=[{"loc": ["input"], "msg": str(exc), "type": "value_error"}])
    return PlaygroundPreview(replicate_input=built, estimated_cost=spec.estimate_cost(config))


def try_draft(
    draft: Draft,
    *,
    source_job: StagingJob | None,
    upload: IO[bytes] | None,
    confirmed_cost: Decimal | None,
    user: AbstractBaseUser,
) -> StagingJob | PlaygroundPreview:
    """Run the draft once on the photo, as a paid try job, only when `confirmed_cost` is its estimate.

    Returns the preview (with the estimate, and nothing created) when the draft is invalid or the cost was not
    confirmed, or was confirmed for a draft that costs something else; otherwise the new try job.
    Raises `PermissionDenied` unless `user` may both create jobs and change the model's config.
    """
    if not (user.has_perm(TRY_PERMISSION) and user.has_perm(CONFIG_PERMISSION)):
        raise PermissionDenied("Trying a draft needs the permissions to create jobs and to change configs.")
    checked = preview(draft, source_job)
    if checked.errors or confirmed_cost is None or confirmed_cost != checked.estimated_cost:
        return checked
    if upload is None:
        if source_job is None:
            missing = {"loc": ["photo"], "msg": "Pick a job's photo or upload one.", "type": "missing"}
            return PlaygroundPreview(estimated_cost=checked.estimated_cost, errors=[missing])
        with source_job.photo.open("rb") as handle:
            upload = io.BytesIO(handle.read())
    return services.create_job(
        upload,
        draft.slug,
        room_type=draft.room_type,
        style=draft.style,
        instructions=draft.instructions,
        config_override=draft.config,
        policy=services.OverridePolicy.of(user),
        is_try=True,
    )
