"""The config API (mounted at /api/v1/admin/models/): the admin's config page, for scripts.

Also the canary (`PUT|DELETE …/config/canary`, `POST …/config/canary/promote`) and the audit history
(`GET …/config/events`). A save of the config that is active already stores nothing and answers 200
with `created: false` (docs/architecture.md#no-op-saves); a real save answers 201 with `created: true`.

Views are thin: reads go through `selectors`, writes through `services`, and the schema served is
the same adapted schema the admin form renders. Errors are answered by `api.errors` from what the
services raise: an unknown slug or version is 404, an invalid config 422 in ninja's own error shape
(`{"detail": [{"loc": ["body", "config", …], "msg", "type"}]}`, nothing stored), a stale
`base_version` 409 naming the version that won.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Path, Query, Router, Schema, Status
from pydantic import AfterValidator, Field

from api.auth import require_perm
from api.schemas import WITH_BODY, ConflictOut, error_responses

from . import canary, selectors, services
from .jsonform import adapted_schema
from .models import CHANGE_CONFIG_PERMISSION, COMMENT_MAX_LENGTH, ConfigEvent, ModelConfig, clean_comment
from .registry import REGISTRY, get_spec

VIEW_PERMS = ("models_config.view_modelconfig", "models_config.change_modelconfig")
CHANGE_PERM = CHANGE_CONFIG_PERMISSION

router = Router(tags=["model configuration"])  # authenticated by the API root (api/root.py)

# Documented as an enum of the registry's slugs; another slug is answered 404 by `get_spec`, naming the known ones.
Slug = Annotated[str, Path(), Field(description="A registered model slug.", json_schema_extra={"enum": list(REGISTRY)})]


# --- schemas ------------------------------------------------------------------------------------


class CanaryOut(Schema):
    version: int = Field(description="The candidate version.")
    share: Decimal = Field(description="Share of new jobs (0 to 1) that run on the candidate.")


class ModelOut(Schema):
    slug: str
    title: str
    ref: str
    active_version: int | None
    canary: CanaryOut | None = Field(None, description="The canary running, if any.")
    updated_at: datetime | None


class ConfigOut(Schema):
    slug: str
    version: int | None = Field(description="The active version; null when the code defaults are used.")
    config: dict[str, Any]
    source: str = Field(description="'stored' (the active version) or 'defaults' (the code defaults).")
    comment: str
    author: str | None
    created_at: datetime | None
    canary: CanaryOut | None = Field(None, description="The canary running, if any.")


class SavedOut(ConfigOut):
    created: bool = Field(description="False when the config equalled the active one: no version was stored.")
    message: str


class EventOut(Schema):
    kind: str = Field(description=f"One of: {', '.join(ConfigEvent.Kind.values)}.")
    version: int | None = Field(description="The version the change points at (activated, candidate, ...).")
    actor: str | None
    comment: str
    data: dict[str, Any]
    created_at: datetime


class VersionOut(Schema):
    number: int
    config: dict[str, Any]
    comment: str
    author: str | None
    created_at: datetime
    active: bool


class ConfigIn(Schema):
    config: dict[str, Any] = Field(description="The whole config; keys left out take the code defaults.")
    comment: Annotated[str, AfterValidator(clean_comment)] = Field(
        description="What changed and why; shown in the history.",
        json_schema_extra={"minLength": 1, "maxLength": COMMENT_MAX_LENGTH},
    )
    base_version: int | None = Field(
        description="The active version you edited (optimistic locking): 409 when it is no longer active."
    )


class ConfigPatchIn(ConfigIn):
    config: dict[str, Any] = Field(
        description="The keys to change (JSON merge patch): a value replaces, null returns the key to its code "
        "default, keys left out keep their active values."
    )


class ActivateIn(Schema):
    base_version: int | None = Field(None, description="When given, 409 unless this is still the active version.")
    comment: str = Field("", description="Why; shown in the history (optional for a rollback).")


class CommentIn(Schema):
    comment: str = Field(
        description="Why; shown in the history.", json_schema_extra={"minLength": 1, "maxLength": COMMENT_MAX_LENGTH}
    )


class CanaryIn(CommentIn):
    version: int = Field(description="The candidate version: an existing one, not the active one.")
    share: Decimal = Field(description="Share of new jobs sent to the candidate: more than 0, at most 1.")


# --- helpers ------------------------------------------------------------------------------------


def _config_out(slug: str) -> dict[str, Any]:
    """What jobs use now, read fresh from the database (not the per-process cache)."""
    selectors.invalidate(slug)
    active = selectors.get_active_config(slug)
    version = selectors.get_version(slug, active.version_number) if active.version_number else None
    return {
        "slug": slug,
        "version": active.version_number,
        "config": active.config.model_dump(mode="json"),
        "source": active.source,
        "comment": version.comment if version else active.reason,
        "author": version.author_name if version else None,
        "created_at": version.created_at if version else None,
        "canary": _canary_out(slug),
    }


def _canary_out(slug: str) -> dict[str, Any] | None:
    return _canary_of(selectors.model_configs().filter(slug=slug).first())


def _canary_of(row: ModelConfig | None) -> dict[str, Any] | None:
    if row is None or row.candidate_version_id is None:
        return None
    return {"version": row.candidate_version.number, "share": row.canary_share}


# --- endpoints ----------------------------------------------------------------------------------


@router.get("/", response={200: list[ModelOut], **error_responses()}, summary="List the configurable models")
def list_models(request: HttpRequest) -> list[dict[str, Any]]:
    require_perm(request, *VIEW_PERMS)
    rows = {row.slug: row for row in selectors.model_configs()}
    out = []
    for slug, spec in REGISTRY.items():
        row = rows.get(slug)
        active = row.active_version.number if row and row.active_version_id else None
        out.append(
            {
                "slug": slug,
                "title": spec.title,
                "ref": spec.ref,
                "active_version": active,
                "canary": _canary_of(row),
                "updated_at": row.updated_at if row else None,
            }
        )
    return out


@router.get("/{slug}/config", response={200: ConfigOut, **error_responses(404)}, summary="The active config")
def get_config(request: HttpRequest, slug: Slug) -> dict[str, Any]:
    require_perm(request, *VIEW_PERMS)
    get_spec(slug)
    return _config_out(slug)


@router.put(
    "/{slug}/config",
    response={201: SavedOut, 200: SavedOut, **error_responses(*WITH_BODY, 404, 409, conflict=ConflictOut)},
    summary="Save a new version and make it active (200, nothing stored, when it equals the active one)",
)
def put_config(request: HttpRequest, slug: Slug, payload: ConfigIn) -> Status:
    """Replace the whole config (keys left out take the code defaults)."""
    user = require_perm(request, CHANGE_PERM)
    get_spec(slug)
    return _saved(slug, services.store_config, payload, user)


@router.patch(
    "/{slug}/config",
    response={201: SavedOut, 200: SavedOut, **error_responses(*WITH_BODY, 404, 409, conflict=ConflictOut)},
    summary="Change some keys of the active config (JSON merge patch) as a new version",
)
def patch_config(request: HttpRequest, slug: Slug, payload: ConfigPatchIn) -> Status:
    """`config` is merged into the active config (RFC 7396: `null` removes a key, so its code default
    applies); keys left out keep their values."""
    user = require_perm(request, CHANGE_PERM)
    get_spec(slug)
    return _saved(slug, services.patch_version, payload, user)


def _saved(slug: str, save: Any, payload: ConfigIn, user: Any) -> Status:
    saved: services.Saved = save(
        slug, payload.config, author=user, comment=payload.comment, base_version=payload.base_version, check_base=True
    )
    number = saved.version.number
    message = (
        f"Saved v{number} and made it active."
        if saved.created
        else f"Nothing changed: the config equals the active v{number}; no version was created."
    )
    return Status(201 if saved.created else 200, {**_config_out(slug), "created": saved.created, "message": message})


@router.get(
    "/{slug}/config/schema", response={200: dict[str, Any], **error_responses(404)}, summary="The config schema"
)
def get_schema(request: HttpRequest, slug: Slug) -> dict[str, Any]:
    """The JSON schema the admin's editor renders (pydantic's, adapted for django-jsonform)."""
    require_perm(request, *VIEW_PERMS)
    get_spec(slug)
    return adapted_schema(slug)


@router.get(
    "/{slug}/config/versions", response={200: list[VersionOut], **error_responses(404)}, summary="Version history"
)
def list_versions(request: HttpRequest, slug: Slug) -> list[dict[str, Any]]:
    require_perm(request, *VIEW_PERMS)
    get_spec(slug)
    row = selectors.model_configs().filter(slug=slug).first()
    active = row.active_version.number if row and row.active_version_id else None
    return [
        {
            "number": version.number,
            "config": version.config,
            "comment": version.comment,
            "author": version.author_name,
            "created_at": version.created_at,
            "active": version.number == active,
        }
        for version in selectors.versions_of(slug)
    ]


@router.post(
    "/{slug}/config/versions/{number}/activate",
    response={200: ConfigOut, **error_responses(*WITH_BODY, 404, 409, conflict=ConflictOut)},
    summary="Make a version active (rollback)",
)
def activate(request: HttpRequest, slug: Slug, number: int, payload: ActivateIn | None = None) -> Status:
    require_perm(request, CHANGE_PERM)
    get_spec(slug)
    base = payload.base_version if payload else None
    services.activate_version(
        slug,
        number,
        base_version=base,
        check_base=base is not None,
        actor=request.auth,
        comment=payload.comment if payload else "",
    )
    return Status(200, _config_out(slug))


@router.get("/{slug}/config/events", response={200: list[EventOut], **error_responses(404)}, summary="Audit history")
def list_events(request: HttpRequest, slug: Slug) -> list[dict[str, Any]]:
    """Every change of the model's pointers (save, activate, reset, canary start, promote, stop) and
    limits, newest first, with who and why."""
    require_perm(request, *VIEW_PERMS)
    get_spec(slug)
    return [
        {
            "kind": event.kind,
            "version": event.version.number if event.version_id else None,
            "actor": event.actor_name,
            "comment": event.comment,
            "data": event.data,
            "created_at": event.created_at,
        }
        for event in selectors.events_of(slug)
    ]


@router.put(
    "/{slug}/config/canary",
    response={200: ConfigOut, **error_responses(*WITH_BODY, 404)},
    summary="Start (or change) a canary: a share of new jobs runs on a candidate version",
)
def start_canary(request: HttpRequest, slug: Slug, payload: CanaryIn) -> dict[str, Any]:
    """Jobs are assigned by their uid, so a job keeps its arm for as long as the canary runs."""
    user = require_perm(request, CHANGE_PERM)
    get_spec(slug)
    canary.start_canary(slug, payload.version, payload.share, actor=user, comment=payload.comment)
    return _config_out(slug)


@router.delete(
    "/{slug}/config/canary",
    response={200: ConfigOut, **error_responses(*WITH_BODY, 404, 409)},
    summary="Stop the canary: every new job runs on the active version",
)
def stop_canary(
    request: HttpRequest,
    slug: Slug,
    payload: CommentIn | None = None,
    why: Annotated[str | None, Query(alias="comment", description="The comment, when no body is sent.")] = None,
) -> dict[str, Any]:
    user = require_perm(request, CHANGE_PERM)
    get_spec(slug)
    canary.stop_canary(slug, actor=user, comment=payload.comment if payload else (why or ""))
    return _config_out(slug)


@router.post(
    "/{slug}/config/canary/promote",
    response={200: ConfigOut, **error_responses(*WITH_BODY, 404, 409)},
    summary="Make the candidate the active version and end the canary",
)
def promote_canary(request: HttpRequest, slug: Slug, payload: CommentIn) -> dict[str, Any]:
    user = require_perm(request, CHANGE_PERM)
    get_spec(slug)
    canary.promote_canary(slug, actor=user, comment=payload.comment)
    return _config_out(slug)
