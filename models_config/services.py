"""Writes to the stored configuration. Admin, API and commands call these; none write rows themselves.

Every move of a pointer goes through `point_at`, which records its audit event in the same transaction
and tells this process's config cache at commit time; other processes notice within
`MODELS_CONFIG_CACHE_SECONDS` (see selectors). The canary's own writes are in `canary.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Max
from django.dispatch import Signal
from pydantic import ValidationError
from pydantic_core import PydanticCustomError, PydanticKnownError

from . import selectors
from .models import ConfigEvent, ModelConfig, ModelConfigVersion, clean_comment
from .registry import REGISTRY, get_spec
from .schemas import describe_errors, field_errors

logger = logging.getLogger(__name__)

INITIAL_COMMENT = "Initial version: code defaults"
RESET_COMMENT = "Reset to code defaults"


class ConfigError(Exception):
    """Base for the errors a person can act on; `str()` is the message to show."""


class ConfigValidationError(ConfigError):
    """The config (or the comment) does not validate; `errors` are `{"loc": [...], "msg", "type"}` per field.

    The `loc`s are relative to the config. `loc_prefix` says where they start in what the caller passed:
    `("config",)` for a config given to the service, `()` for another argument (the `comment`), None
    when the invalid config was not passed in at all (a stored version being activated). The HTTP API
    answers from it, so no view has to catch this error to point at the right field.
    """

    def __init__(self, errors: list[dict[str, Any]], *, loc_prefix: tuple[str | int, ...] | None = ("config",)):
        self.errors = errors
        self.loc_prefix = loc_prefix
        super().__init__(f"Invalid configuration: {describe_errors(errors)}")

    @classmethod
    def from_pydantic(
        cls, exc: ValidationError, *, loc_prefix: tuple[str | int, ...] | None = ("config",)
    ) -> ConfigValidationError:
        return cls(field_errors(exc), loc_prefix=loc_prefix)


@dataclass(frozen=True)
class Saved:
    """What a save did: `created` is False when the config equalled the active one, so `version` is that
    active version and nothing was stored (docs/architecture.md#no-op-saves)."""

    version: ModelConfigVersion
    created: bool


class UnknownVersionError(ConfigError, LookupError):
    """The model has no version of that number."""

    def __init__(self, slug: str, number: int) -> None:
        self.slug, self.number = slug, number
        super().__init__(f"{slug} has no version {number}.")


class VersionConflictError(ConfigError):
    """Somebody activated another version since the editor loaded the page (optimistic locking).

    `active_version`, when known, is the version that won, so an answer can say who made it and why.
    """

    def __init__(
        self,
        slug: str,
        expected: int | None,
        active: int | None,
        active_version: ModelConfigVersion | None = None,
    ) -> None:
        self.slug, self.expected, self.active, self.active_version = slug, expected, active, active_version
        super().__init__(f"{_conflict(slug, expected, active)} Reload, review their change and save again.")


def _conflict(slug: str, expected: int | None, active: int | None) -> str:
    """What changed, naming a model that has no version yet as such (never "vNone")."""
    if active is None:
        return f"{slug} has no version yet, not v{expected}: its versions changed since you loaded it."
    if expected is None:
        return f"The active version of {slug} is now v{active}; you started when it had no version yet."
    return f"The active version of {slug} is now v{active}, not v{expected}: someone else changed it."


def validate_config(
    slug: str, config: Mapping[str, Any], *, loc_prefix: tuple[str | int, ...] | None = ("config",)
) -> dict[str, Any]:
    """Validate a whole config with the model's schema and return it normalised (defaults filled in).

    Every write (save, reset, activate, the admin form) goes through here, with the prompt cap
    (`selectors.saving_context`). `loc_prefix` is passed on to the `ConfigValidationError` (see there).
    """
    spec = get_spec(slug)
    try:
        validated = spec.config_schema.model_validate(dict(config), context=selectors.saving_context())
        return validated.model_dump(mode="json")
    except ValidationError as exc:
        raise ConfigValidationError.from_pydantic(exc, loc_prefix=loc_prefix) from None


def ensure_config_rows(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Give every registered model a config row with a first version; return the slugs created.

    `migrate` calls it on every run (`models_config.management.create_config_rows`), so it is
    idempotent and never touches a model that already has a version.
    """
    created = []
    for slug, spec in REGISTRY.items():
        with transaction.atomic(using=using):
            row, _ = ModelConfig.objects.using(using).select_for_update().get_or_create(slug=slug)
            if row.active_version_id is None and not row.versions.exists():
                defaults = spec.default_config().model_dump(mode="json")
                _create_version(row, defaults, ConfigEvent.Kind.SAVE, author=None, comment=INITIAL_COMMENT)
                created.append(slug)
    return created


def save_version(slug: str, config: Mapping[str, Any], **options: Any) -> ModelConfigVersion:
    """`store_config` (same options) for a caller that does not need to know whether anything was stored:
    the version jobs use afterwards."""
    return store_config(slug, config, **options).version


def store_config(
    slug: str,
    config: Mapping[str, Any],
    *,
    author: AbstractBaseUser | None,
    comment: str,
    base_version: int | None = None,
    check_base: bool = False,
    kind: ConfigEvent.Kind = ConfigEvent.Kind.SAVE,
) -> Saved:
    """Store `config` as the next version of `slug` and activate it, unless it equals the active config.

    An identical config creates no version and no event (`Saved.created` False): a version that changes
    nothing would only bury the real changes in the history (docs/architecture.md#no-op-saves).
    With `check_base`, refuse (VersionConflictError) unless the active version is still `base_version`,
    so two people editing at once never silently overwrite each other.
    """
    comment = checked_comment(comment)
    normalised = validate_config(slug, config)
    with transaction.atomic():
        row = lock_row(slug)
        _check_base(row, base_version, check_base)
        if row.active_version_id and row.active_version.config == normalised:
            return Saved(row.active_version, created=False)
        return Saved(_create_version(row, normalised, kind, author=author, comment=comment), created=True)


def checked_comment(comment: str) -> str:
    """`clean_comment`, its refusal as a 422 on the request's `comment`."""
    try:
        return clean_comment(comment)
    except (PydanticCustomError, PydanticKnownError) as exc:
        raise ConfigValidationError([{"loc": ["comment"], "msg": str(exc), "type": exc.type}], loc_prefix=()) from None


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch: keys in `patch` replace, `null` removes (the code default then applies),
    objects merge key by key; keys left out keep their value."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def patch_version(
    slug: str,
    patch: Mapping[str, Any],
    *,
    author: AbstractBaseUser | None,
    comment: str,
    base_version: int | None = None,
    check_base: bool = False,
) -> Saved:
    """Save the active config with `patch` merged in (`merge_patch`) as the next version: a change of a
    few keys, without restating (or silently resetting) the others. Same checks as `store_config`."""
    with transaction.atomic():
        row = lock_row(slug)  # held until the save: nobody changes the config between read and write
        current = (
            row.active_version.config
            if row.active_version_id
            else get_spec(slug).default_config().model_dump(mode="json")
        )
        return store_config(
            slug,
            merge_patch(current, patch),
            author=author,
            comment=comment,
            base_version=base_version,
            check_base=check_base,
        )


def activate_version(
    slug: str,
    number: int,
    *,
    base_version: int | None = None,
    check_base: bool = False,
    actor: AbstractBaseUser | None = None,
    comment: str = "",
) -> ModelConfigVersion:
    """Make an existing version active again (rollback). Copies nothing: history stays linear.

    A version that no longer validates against today's schema is refused, since activating it
    would only make every job fall back to the code defaults. Activating the canary's candidate is
    promoting it (docs/architecture.md#canary). The comment is optional here (a rollback is often urgent).
    """
    comment = checked_comment(comment) if (comment or "").strip() else ""
    with transaction.atomic():
        row = lock_row(slug)
        version = row.versions.filter(number=number).first()
        if version is None:
            raise UnknownVersionError(slug, number)
        _check_base(row, base_version, check_base)
        validate_config(slug, version.config, loc_prefix=None)  # stored: nothing the caller sent is wrong
        point_at(row, version, ConfigEvent.Kind.ACTIVATE, actor=actor, comment=comment)
        return version


def reset_to_defaults(
    slug: str,
    *,
    author: AbstractBaseUser | None,
    comment: str = RESET_COMMENT,
    base_version: int | None = None,
    check_base: bool = False,
) -> Saved:
    """Save the code defaults as a new version: a reset is history too, and as conflict-checked as a save.
    When the defaults are what is active already, nothing is stored (`Saved.created` False)."""
    defaults = get_spec(slug).default_config().model_dump(mode="json")
    return store_config(
        slug,
        defaults,
        author=author,
        comment=comment or RESET_COMMENT,
        base_version=base_version,
        check_base=check_base,
        kind=ConfigEvent.Kind.RESET,
    )


def _check_base(row: ModelConfig, base_version: int | None, check_base: bool) -> None:
    active = row.active_version.number if row.active_version_id else None
    if check_base and base_version != active:
        raise VersionConflictError(row.slug, base_version, active, row.active_version)


def lock_row(slug: str) -> ModelConfig:
    """The model's config row, locked until the transaction ends: every pointer change holds it."""
    get_spec(slug)  # unknown slugs fail with the list of known ones
    row, _ = ModelConfig.objects.select_for_update().get_or_create(slug=slug)
    return row


def _create_version(
    row: ModelConfig, config: dict[str, Any], kind: ConfigEvent.Kind, *, author, comment: str
) -> ModelConfigVersion:
    last = row.versions.aggregate(last=Max("number"))["last"] or 0
    version = row.versions.create(number=last + 1, config=config, author=author, comment=comment)
    point_at(row, version, kind, actor=author, comment=comment)
    return version


def point_at(
    row: ModelConfig,
    version: ModelConfigVersion,
    kind: ConfigEvent.Kind,
    *,
    actor: AbstractBaseUser | None,
    comment: str,
) -> ConfigEvent:
    """Make `version` the active one (the row is locked by the caller) and record why.

    A running canary ends here: activating its candidate is promoting it; any other save, activation or
    reset stops it (the candidate was being compared with a baseline that is gone), with its own event
    (docs/architecture.md#canary).
    """
    candidate = row.candidate_version
    if candidate is not None and candidate.pk == version.pk:
        kind = ConfigEvent.Kind.CANARY_PROMOTE
    elif candidate is not None:
        record_event(
            row,
            ConfigEvent.Kind.CANARY_STOP,
            actor=actor,
            comment=f"Stopped because v{version.number} became active ({ConfigEvent.Kind(kind).label}).",
            version=candidate,
            data={"share": str(row.canary_share)},
        )
    row.active_version = version
    row.candidate_version = None
    row.canary_share = 0
    row.save(update_fields=["active_version", "candidate_version", "canary_share", "updated_at"])
    logger.info("Activated %s v%s", row.slug, version.number)
    transaction.on_commit(lambda: selectors.invalidate(row.slug))
    return record_event(row, kind, actor=actor, comment=comment, version=version)


def record_event(
    row: ModelConfig,
    kind: ConfigEvent.Kind,
    *,
    actor: AbstractBaseUser | None,
    comment: str = "",
    version: ModelConfigVersion | None = None,
    data: Mapping[str, Any] | None = None,
) -> ConfigEvent:
    """Append one audit event (docs/architecture.md#audit). Call it inside the transaction that makes
    the change, so a change and its event are stored together or not at all."""
    event = ConfigEvent.objects.db_manager(row._state.db).create(
        model_config=row,
        kind=kind,
        actor=actor if actor is not None and actor.is_authenticated else None,
        comment=comment,
        version=version,
        data=dict(data or {}),
    )
    logger.info("Config event %s on %s (v%s)", kind, row.slug, version.number if version else "-")
    return event


# A model's daily spend limit changed (sent on commit, with `slug`): staging resumes attempts held by a cap
# (docs/architecture.md#spend-caps). A signal, because models_config never imports staging.
spend_limit_changed = Signal()
# What `ModelConfig.daily_spend_limit` (10 digits, 2 decimals) can hold.
MAX_DAILY_SPEND_LIMIT = Decimal(10) ** 8


def set_daily_spend_limit(
    slug: str, limit: Decimal | None, *, actor: AbstractBaseUser | None, comment: str = ""
) -> ModelConfig:
    """Set the model's own daily cap in USD per UTC day (None: no cap of its own), audited as a `spend_limit`
    event with the old and new value. A negative or non-finite amount is refused (ConfigValidationError)."""
    errors = []
    if limit is not None and (not limit.is_finite() or limit < 0):
        errors.append(
            {"loc": ["limit"], "msg": "The limit must be 0 or more (USD per day).", "type": "greater_than_equal"}
        )
    elif limit is not None and limit >= MAX_DAILY_SPEND_LIMIT:
        message = f"The limit must be under {MAX_DAILY_SPEND_LIMIT} (USD per day)."
        errors.append({"loc": ["limit"], "msg": message, "type": "less_than"})
    elif limit is not None and limit.quantize(Decimal("0.01")) != limit:
        message = "The limit is in USD with at most 2 decimals."
        errors.append({"loc": ["limit"], "msg": message, "type": "decimal_max_places"})
    try:
        comment = clean_comment(comment) if (comment or "").strip() else ""
    except (PydanticCustomError, PydanticKnownError) as exc:
        errors.append({"loc": ["comment"], "msg": str(exc), "type": exc.type})
    if errors:
        raise ConfigValidationError(errors, loc_prefix=())
    with transaction.atomic():
        row = lock_row(slug)
        old = row.daily_spend_limit
        row.daily_spend_limit = limit
        row.save(update_fields=["daily_spend_limit", "updated_at"])
        data = {"old": None if old is None else str(old), "new": None if limit is None else str(limit)}
        record_event(row, ConfigEvent.Kind.SPEND_LIMIT, actor=actor, comment=comment, data=data)
        transaction.on_commit(lambda: spend_limit_changed.send(sender=ModelConfig, slug=slug))
    return row
