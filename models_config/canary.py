"""Writes of the canary: try a candidate version on a share of the jobs, then promote or stop it.

Each write holds the model's row lock (`services.lock_row`) and records its audit event in the same
transaction, like every other pointer change; which arm a job lands on is read by
`selectors.config_for_job` (docs/architecture.md#canary).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from pydantic_core import PydanticCustomError

from . import selectors
from .models import ConfigEvent, ModelConfig, ModelConfigVersion, clean_share
from .services import (
    ConfigError,
    ConfigValidationError,
    checked_comment,
    lock_row,
    point_at,
    record_event,
    validate_config,
)

logger = logging.getLogger(__name__)


class NoCanaryError(ConfigError):
    """Promote or stop asked of a model that runs no canary (a 409: someone else ended it first)."""

    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(f"{slug} runs no canary: nothing to promote or stop.")


def _refuse(field: str, message: str, type_: str = "value_error") -> ConfigValidationError:
    """A 422 on one field of the request (`version`, `share`)."""
    return ConfigValidationError([{"loc": [field], "msg": message, "type": type_}], loc_prefix=())


def checked_share(share: Decimal | float | str) -> Decimal:
    """`models.clean_share`, its refusal as a 422 on the request's `share`."""
    try:
        return clean_share(share)
    except PydanticCustomError as exc:
        raise _refuse("share", str(exc), exc.type) from None


def start_canary(
    slug: str, version_number: int, share: Decimal | float | str, *, actor: AbstractBaseUser | None, comment: str
) -> ModelConfig:
    """Send `share` of the new jobs to version `version_number`; the rest stay on the active version.

    The candidate must exist, validate against today's schema and not be the active version. Starting
    while a canary runs replaces its candidate and share (one event says so).
    """
    comment = checked_comment(comment)
    share = checked_share(share)
    with transaction.atomic():
        row = lock_row(slug)
        version = row.versions.filter(number=version_number).first()
        if version is None:
            raise _refuse("version", f"{slug} has no version {version_number}.")
        if version.pk == row.active_version_id:
            raise _refuse("version", f"v{version_number} is the active version already; a canary tries another one.")
        _check_stored(slug, version)
        data = {"share": str(share)}
        if row.candidate_version_id:
            data.update(replaced_version=row.candidate_version.number, replaced_share=str(row.canary_share))
        row.candidate_version, row.canary_share = version, share
        _save(row)
        record_event(row, ConfigEvent.Kind.CANARY_START, actor=actor, comment=comment, version=version, data=data)
    logger.info("Canary of %s: v%s on %s of the jobs", slug, version_number, share)
    return row


def promote_canary(slug: str, *, actor: AbstractBaseUser | None, comment: str) -> ModelConfigVersion:
    """Make the candidate the active version and end the canary, in one step (one event)."""
    comment = checked_comment(comment)
    with transaction.atomic():
        row, candidate = _running(slug)
        validate_config(slug, candidate.config, loc_prefix=None)  # stored: nothing the caller sent is wrong
        point_at(row, candidate, ConfigEvent.Kind.CANARY_PROMOTE, actor=actor, comment=comment)
    return candidate


def stop_canary(slug: str, *, actor: AbstractBaseUser | None, comment: str) -> ModelConfigVersion:
    """Send every new job to the active version again; returns the candidate that was stopped."""
    comment = checked_comment(comment)
    with transaction.atomic():
        row, candidate = _running(slug)
        data = {"share": str(row.canary_share)}
        row.candidate_version, row.canary_share = None, Decimal(0)
        _save(row)
        record_event(row, ConfigEvent.Kind.CANARY_STOP, actor=actor, comment=comment, version=candidate, data=data)
    return candidate


def _running(slug: str) -> tuple[ModelConfig, ModelConfigVersion]:
    """The locked row and its candidate; NoCanaryError when no canary runs."""
    row = lock_row(slug)
    if row.candidate_version is None:
        raise NoCanaryError(slug)
    return row, row.candidate_version


def _check_stored(slug: str, version: ModelConfigVersion) -> None:
    """A stored version that no longer validates would send its jobs to the code defaults: refused."""
    try:
        validate_config(slug, version.config, loc_prefix=None)
    except ConfigValidationError as exc:
        raise _refuse("version", f"v{version.number} no longer validates: {exc}") from None


def _save(row: ModelConfig) -> None:
    row.save(update_fields=["candidate_version", "canary_share", "updated_at"])
    transaction.on_commit(lambda: selectors.invalidate(row.slug))
