"""The config API (mounted at /api/v1/admin/models/): the admin's config page, for scripts.

Views are thin: reads go through `selectors`, writes through `services`, and the schema served is
the same adapted schema the admin form renders. Invalid configs answer 422 in ninja's own error
shape (`{"detail": [{"loc": ["body", "config", …], "msg", "type"}]}`) and store nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import Field, field_validator

from . import selectors, services
from .auth import api_auth, require_perm
from .jsonform import adapted_schema
from .models import ModelConfigVersion
from .registry import REGISTRY, ModelSpec, UnknownModelError, get_spec

VIEW_PERMS = ("models_config.view_modelconfig", "models_config.change_modelconfig")
CHANGE_PERM = "models_config.change_modelconfig"

router = Router(auth=api_auth(), tags=["model configuration"])


# --- schemas ------------------------------------------------------------------------------------


class ModelOut(Schema):
    slug: str
    title: str
    ref: str
    active_version: int | None
    updated_at: datetime | None


class ConfigOut(Schema):
    slug: str
    version: int | None = Field(description="The active version; null when the code defaults are used.")
    config: dict[str, Any]
    source: str = Field(description="'stored' (the active version) or 'defaults' (the code defaults).")
    comment: str
    author: str | None
    created_at: datetime | None


class VersionOut(Schema):
    number: int
    config: dict[str, Any]
    comment: str
    author: str | None
    created_at: datetime
    active: bool


class ConfigIn(Schema):
    config: dict[str, Any] = Field(description="The whole config; keys left out take the code defaults.")
    comment: str = Field(max_length=500, description="What changed and why; shown in the history.")
    base_version: int | None = Field(
        description="The active version you edited (optimistic locking): 409 when it is no longer active."
    )

    @field_validator("comment")
    @classmethod
    def _comment_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Say what changed and why.")
        return value.strip()


class ActivateIn(Schema):
    base_version: int | None = Field(None, description="When given, 409 unless this is still the active version.")


class ErrorOut(Schema):
    detail: str


class ConflictOut(Schema):
    detail: str
    active_version: int | None
    active_author: str | None
    active_comment: str | None


# --- helpers ------------------------------------------------------------------------------------


def _spec(slug: str) -> ModelSpec:
    try:
        return get_spec(slug)
    except UnknownModelError as exc:
        raise HttpError(404, str(exc)) from None


def _author(version: ModelConfigVersion | None) -> str | None:
    return version.author.get_username() if version and version.author else None


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
        "author": _author(version),
        "created_at": version.created_at if version else None,
    }


def _conflict(slug: str, exc: services.VersionConflictError) -> Status:
    version = selectors.get_version(slug, exc.active) if exc.active else None
    detail = str(exc)
    if version:
        detail += f" v{exc.active} is by {_author(version) or 'nobody (system)'}: {version.comment!r}."
    return Status(
        409,
        {
            "detail": detail,
            "active_version": exc.active,
            "active_author": _author(version),
            "active_comment": version.comment if version else None,
        },
    )


# --- endpoints ----------------------------------------------------------------------------------


@router.get("/", response=list[ModelOut], summary="List the configurable models")
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
                "updated_at": row.updated_at if row else None,
            }
        )
    return out


@router.get("/{slug}/config", response={200: ConfigOut, 404: ErrorOut}, summary="The active config")
def get_config(request: HttpRequest, slug: str) -> dict[str, Any]:
    require_perm(request, *VIEW_PERMS)
    _spec(slug)
    return _config_out(slug)


@router.put(
    "/{slug}/config",
    response={201: ConfigOut, 404: ErrorOut, 409: ConflictOut},
    summary="Save a new version and make it active",
)
def put_config(request: HttpRequest, slug: str, payload: ConfigIn) -> Status:
    user = require_perm(request, CHANGE_PERM)
    _spec(slug)
    try:
        services.save_version(
            slug,
            payload.config,
            author=user,
            comment=payload.comment,
            base_version=payload.base_version,
            check_base=True,
        )
    except services.ConfigValidationError as exc:
        raise NinjaValidationError(
            [{"loc": ["body", "config", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors]
        ) from None
    except services.VersionConflictError as exc:
        return _conflict(slug, exc)
    return Status(201, _config_out(slug))


@router.get("/{slug}/config/schema", response={200: dict[str, Any], 404: ErrorOut}, summary="The config schema")
def get_schema(request: HttpRequest, slug: str) -> dict[str, Any]:
    """The JSON schema the admin's editor renders (pydantic's, adapted for django-jsonform)."""
    require_perm(request, *VIEW_PERMS)
    _spec(slug)
    return adapted_schema(slug)


@router.get("/{slug}/config/versions", response={200: list[VersionOut], 404: ErrorOut}, summary="Version history")
def list_versions(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    require_perm(request, *VIEW_PERMS)
    _spec(slug)
    row = selectors.model_configs().filter(slug=slug).first()
    active = row.active_version.number if row and row.active_version_id else None
    return [
        {
            "number": version.number,
            "config": version.config,
            "comment": version.comment,
            "author": _author(version),
            "created_at": version.created_at,
            "active": version.number == active,
        }
        for version in selectors.versions_of(slug)
    ]


@router.post(
    "/{slug}/config/versions/{number}/activate",
    response={200: ConfigOut, 404: ErrorOut, 409: ConflictOut, 422: ErrorOut},
    summary="Make a version active (rollback)",
)
def activate(request: HttpRequest, slug: str, number: int, payload: ActivateIn | None = None) -> Status:
    require_perm(request, CHANGE_PERM)
    _spec(slug)
    if selectors.get_version(slug, number) is None:
        raise HttpError(404, f"{slug} has no version {number}.")
    base = payload.base_version if payload else None
    try:
        services.activate_version(slug, number, base_version=base, check_base=base is not None)
    except services.VersionConflictError as exc:
        return _conflict(slug, exc)
    except services.ConfigError as exc:  # e.g. the version no longer validates
        raise HttpError(422, str(exc)) from None
    return Status(200, _config_out(slug))
