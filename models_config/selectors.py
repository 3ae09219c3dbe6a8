"""Reads of the stored configuration, and the cached `get_active_config` on every job's path.

The cache is per process. An entry is trusted for `MODELS_CONFIG_CACHE_SECONDS` (1 s by default);
after that one cheap query compares the row's pointers, and only a change loads a version.
So a steady-state read costs no query and an activation anywhere is seen everywhere within about
a second, with no shared cache or message bus to run. A write in this process invalidates at once.
The same entry holds the canary's candidate and share, so `config_for_job` costs no more
(docs/architecture.md#canary).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.db import DatabaseError
from django.db.models import QuerySet
from pydantic import ValidationError

from .builders import StagingRequest
from .models import ConfigEvent, ModelConfig, ModelConfigVersion
from .registry import get_spec
from .schemas import MAX_PROMPT_CHARS_CONTEXT, StagingConfig, describe_errors, field_errors

logger = logging.getLogger(__name__)


Arm = Literal["active", "candidate"]  # the values of staging.models.Arm, which models_config may not import


@dataclass(frozen=True)
class ActiveConfig:
    """The config a job should use, and where it came from (recorded on every attempt)."""

    slug: str
    config: StagingConfig
    version_id: int | None = None  # ModelConfigVersion pk; None when the code defaults are used
    version_number: int | None = None
    source: Literal["stored", "defaults"] = "defaults"
    reason: str = ""  # why the defaults are used, when they are
    arm: Arm = "active"  # which pointer it came from (docs/architecture.md#canary)


@dataclass(frozen=True)
class Pointers:
    """What a model runs now: the active config and, while a canary runs, the candidate and its share.

    `key` is the row as read (active id, candidate id, share): the cache's cheap recheck compares it.
    """

    active: ActiveConfig
    candidate: ActiveConfig | None = None
    share: Decimal = Decimal(0)
    key: tuple[Any, ...] | None = None


@dataclass
class _Entry:
    value: Pointers
    checked_at: float


_cache: dict[str, _Entry] = {}
_lock = threading.Lock()


def invalidate(slug: str | None = None) -> None:
    """Forget cached configs (one model, or all) so the next read goes to the database."""
    with _lock:
        if slug is None:
            _cache.clear()
        else:
            _cache.pop(slug, None)


def get_active_config(slug: str) -> ActiveConfig:
    """The active, validated config of `slug`, falling back to the code defaults with a warning.

    Unknown slugs raise `UnknownModelError`: that is a caller's bug, not a config problem. When the
    database fails and a config is cached, the last good config is kept rather than the defaults.
    """
    return get_pointers(slug).active


def config_for_job(slug: str, job_uid: uuid.UUID | str) -> ActiveConfig:
    """The config a new attempt of the job `job_uid` uses: the candidate's when the canary takes the job
    (`arm_for`), else the active one. The same job gets the same arm for as long as the canary runs."""
    pointers = get_pointers(slug)
    if pointers.candidate is not None and arm_for(job_uid, pointers.share) == "candidate":
        return pointers.candidate
    return pointers.active


def canary_bucket(job_uid: uuid.UUID | str) -> float:
    """Where a job falls in [0, 1): from a hash of its uid alone, so every process, every retry and every
    reprocess of the job computes the same number (Python's own `hash` is salted per process)."""
    digest = hashlib.sha256(uuid.UUID(str(job_uid)).bytes).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_for(job_uid: uuid.UUID | str, share: Decimal) -> Arm:
    """The candidate takes the jobs whose bucket lies below its share (docs/architecture.md#canary)."""
    return "candidate" if share > 0 and canary_bucket(job_uid) < share else "active"


def get_pointers(slug: str) -> Pointers:
    """The cached `Pointers` of `slug`: trusted for MODELS_CONFIG_CACHE_SECONDS, then one cheap query of the
    row's pointers and share, and only a change loads versions. A canary started, promoted or stopped
    anywhere is seen within about a second, like an activation."""
    spec = get_spec(slug)
    now = time.monotonic()
    entry = _cache.get(slug)
    if entry and now - entry.checked_at < settings.MODELS_CONFIG_CACHE_SECONDS:
        return entry.value

    try:
        key = (
            ModelConfig.objects.filter(slug=slug)
            .values_list("active_version_id", "candidate_version_id", "canary_share")
            .first()
        )
        if entry and entry.value.active.version_id is not None and entry.value.key == key:
            value = entry.value
        else:
            value = _load_pointers(slug, key)
    except DatabaseError as exc:
        reason = f"database error: {exc.__class__.__name__}: {exc}".strip()
        if entry and entry.value.active.source == "stored":
            logger.warning("Config for %s: %s; keeping cached v%s", slug, reason, entry.value.active.version_number)
            value = entry.value
        else:
            value = Pointers(active=_defaults(slug, reason))
    except Exception:  # never let a config read break a job
        logger.exception("Config for %s: unexpected error; using code defaults", slug)
        value = Pointers(active=ActiveConfig(slug=slug, config=spec.default_config(), reason="unexpected error"))

    with _lock:
        _cache[slug] = _Entry(value=value, checked_at=now)
    return value


def _load_pointers(slug: str, key: tuple[Any, ...] | None) -> Pointers:
    active_id, candidate_id, share = key if key is not None else (None, None, Decimal(0))
    active = _load(slug, active_id)
    if candidate_id is None:
        return Pointers(active=active, key=key)
    candidate = _load(slug, candidate_id, arm="candidate")
    if candidate.source != "stored":  # a broken candidate takes no jobs: they stay on the active version
        logger.warning("Canary of %s: %s; every job stays on the active version", slug, candidate.reason)
        return Pointers(active=active, key=key)
    return Pointers(active=active, candidate=candidate, share=Decimal(share), key=key)


def _load(slug: str, version_id: int | None, arm: Arm = "active") -> ActiveConfig:
    if version_id is None:
        return _defaults(slug, "no stored configuration")
    version = ModelConfigVersion.objects.filter(pk=version_id).values("number", "config").first()
    if version is None:
        return _defaults(slug, f"the {arm} version is missing")
    try:
        config = get_spec(slug).config_schema.model_validate(version["config"])
    except ValidationError as exc:
        problems = describe_errors(exc.errors())
        return _defaults(slug, f"stored v{version['number']} no longer validates ({problems})")
    return ActiveConfig(
        slug=slug,
        config=config,
        version_id=version_id,
        version_number=version["number"],
        source="stored",
        arm=arm,
    )


def stored_config(slug: str, version_id: int) -> ActiveConfig:
    """A given stored version of `slug` in place of the active one (`reprocess --config-version`).

    Unlike `get_active_config` it never falls back to the defaults: whoever named the version asked for
    exactly it, so one that no longer validates raises pydantic's `ValidationError`, and a version of
    another model raises `ModelConfigVersion.DoesNotExist`.
    """
    version = ModelConfigVersion.objects.filter(pk=version_id, model_config__slug=slug).values("number", "config").get()
    config = get_spec(slug).config_schema.model_validate(version["config"])
    return ActiveConfig(
        slug=slug, config=config, version_id=version_id, version_number=version["number"], source="stored"
    )


def _defaults(slug: str, reason: str) -> ActiveConfig:
    logger.warning("Config for %s: %s; using the code defaults", slug, reason)
    return ActiveConfig(slug=slug, config=get_spec(slug).default_config(), reason=reason)


def saving_context() -> dict[str, Any]:
    """The pydantic context a config is validated with before it is stored or previewed.

    It carries `STAGING_MAX_PROMPT_CHARS`, so a template whose prompt could be over the cap for some
    job is refused when saved; reading a stored config skips that check (a lowered cap must not turn
    every stored version into the defaults), and each job's own prompt is checked when it is created.
    """
    return {MAX_PROMPT_CHARS_CONTEXT: settings.STAGING_MAX_PROMPT_CHARS}


# --- Plain reads for the admin and the API ------------------------------------------------------


def model_configs() -> QuerySet[ModelConfig]:
    return ModelConfig.objects.select_related("active_version", "candidate_version")


def versions_of(slug: str) -> QuerySet[ModelConfigVersion]:
    return ModelConfigVersion.objects.filter(model_config__slug=slug).select_related("author").order_by("-number")


def get_version(slug: str, number: int) -> ModelConfigVersion | None:
    return versions_of(slug).filter(number=number).first()


def events_of(slug: str) -> QuerySet[ConfigEvent]:
    """The one audit history of a model, newest first (docs/architecture.md#audit)."""
    return ConfigEvent.objects.filter(model_config__slug=slug).select_related("actor", "version")


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any


_MISSING = "(not set)"


def diff_configs(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Field-by-field differences between two stored configs, in the schema's field order."""
    keys = list(dict.fromkeys([*old, *new]))
    return [
        Change(key, old.get(key, _MISSING), new.get(key, _MISSING))
        for key in keys
        if old.get(key, _MISSING) != new.get(key, _MISSING)
    ]


# --- The admin's preview and version diff --------------------------------------------------------

# The sample job a preview is built for: fixed, so previews of two drafts are comparable.
SAMPLE_REQUEST = StagingRequest(
    image_url="https://example.com/sample-empty-room.jpg",
    room_type="living room",
    style="Scandinavian",
    instructions="",
)


@dataclass
class Preview:
    """The exact Replicate input a config would send for the sample job, or why it cannot."""

    replicate_input: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_json(self) -> str:
        return json.dumps(self.replicate_input, indent=2, ensure_ascii=False)


def preview_input(slug: str, draft: Any) -> Preview:
    """Validate `draft` as `slug`'s config and build the sample job's input from it.

    Both steps go through pydantic: a config error has the config field's `loc`, an input error
    (the builder produced something the real model would refuse) is reported as `input.…`.
    """
    spec = get_spec(slug)
    if not isinstance(draft, dict):
        return Preview(errors=[{"loc": [], "msg": "The configuration must be a JSON object.", "type": "type"}])
    try:
        config = spec.config_schema.model_validate(draft, context=saving_context())
    except ValidationError as exc:
        return Preview(errors=field_errors(exc))
    try:
        return Preview(replicate_input=spec.build_input(SAMPLE_REQUEST, config))
    except ValidationError as exc:
        return Preview(errors=field_errors(exc, ("input",)))


@dataclass
class Diff:
    old: ModelConfigVersion
    new: ModelConfigVersion
    changes: list[Change]


def version_diff(slug: str, old_number: int, new_number: int) -> Diff | None:
    """Changes from version `old_number` to `new_number`; None when either does not exist."""
    old, new = get_version(slug, old_number), get_version(slug, new_number)
    if old is None or new is None:
        return None
    return Diff(old=old, new=new, changes=diff_configs(old.config, new.config))
