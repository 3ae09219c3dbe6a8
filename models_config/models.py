"""Stored configuration: one `ModelConfig` per registered model, pointing at its active version.

Versions are immutable and numbered per model. Saving creates a new version and activates it;
rollback moves the pointer to an older version and copies nothing, so history stays linear and
"which config did this job use" is always one foreign key away.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from pydantic_core import PydanticCustomError, PydanticKnownError

from .registry import REGISTRY
from .schemas import reject_nul

COMMENT_MAX_LENGTH = 500
# Who may change a model's config; also who may override its prompt and safety settings for one job.
CHANGE_CONFIG_PERMISSION = "models_config.change_modelconfig"


def clean_comment(value: str | None) -> str:
    """A version's comment, stripped: the one rule the admin form, the API and `services` apply.

    History is only useful when it says why, so a blank comment is refused, and one with a NUL
    character too (the text rule of `schemas.reject_nul`). The errors are pydantic's
    (a `ValueError` with a `type`), so a pydantic schema can use this as a validator as it is.
    """
    comment = (value or "").strip()
    if not comment:
        raise PydanticCustomError("missing", "Say what changed and why.")
    if len(comment) > COMMENT_MAX_LENGTH:
        raise PydanticKnownError("string_too_long", {"max_length": COMMENT_MAX_LENGTH})
    return reject_nul(comment)


SHARE_PLACES = Decimal("0.001")  # ModelConfig.canary_share keeps three decimal places


def clean_share(value: Decimal | float | str) -> Decimal:
    """A canary's traffic share: more than 0, at most 1, to a thousandth; the one rule the admin, the API
    and `canary.start_canary` apply. 0 is refused (that is no canary: stop it instead); 1 sends every new
    job to the candidate while the active version stays ready to fall back to. Errors are pydantic's, as
    in `clean_comment`."""
    try:
        share = Decimal(str(value)).quantize(SHARE_PLACES)
    except (InvalidOperation, ValueError):
        raise PydanticCustomError("decimal_parsing", "The share must be a number from 0 to 1.") from None
    if not share.is_finite() or not Decimal(0) < share <= 1:
        raise PydanticCustomError(
            "share_range", "The share must be more than 0 and at most 1 (to a thousandth); stop the canary for 0."
        )
    return share


class ModelConfig(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    active_version = models.ForeignKey(
        "ModelConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Canary: a candidate version tried on `canary_share` of the jobs (docs/architecture.md#canary).
    candidate_version = models.ForeignKey(
        "ModelConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    canary_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Share of jobs (0 to 1) sent to the candidate version.",
    )
    daily_spend_limit = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="USD per day for this model; empty: no cap of its own (the overall cap still applies).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        verbose_name = "model configuration"

    def __str__(self) -> str:
        spec = REGISTRY.get(self.slug)
        return spec.title if spec else self.slug

    def clean(self) -> None:
        if self.slug not in REGISTRY:
            raise ValidationError({"slug": f"No registered model is called '{self.slug}'."})
        if self.active_version_id and self.active_version.model_config_id != self.pk:
            raise ValidationError({"active_version": "The active version must belong to this model."})


class ModelConfigVersion(models.Model):
    model_config = models.ForeignKey(ModelConfig, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    config = models.JSONField(help_text="Normalised by the model's pydantic schema (defaults filled in).")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    comment = models.CharField(max_length=COMMENT_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_config", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["model_config", "number"], name="unique_version_number_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model_config.slug} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValidationError("A configuration version is immutable; save a new version instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Configuration versions are history and cannot be deleted.")

    @property
    def author_name(self) -> str | None:
        """Who saved it; None for the versions the system made (the first one, from the code defaults)."""
        return self.author.get_username() if self.author_id else None


class ConfigEvent(models.Model):
    """One audited change of what a model runs or may spend: who, when, why.

    Versions record what was saved; events record every move of a pointer (activate, reset, canary
    start, promote, stop) and every spend-limit change, so the config page shows one history that
    answers "why did this model behave differently since Tuesday" (docs/architecture.md#audit).
    Events are append-only, like versions.
    """

    class Kind(models.TextChoices):
        SAVE = "save", "saved and activated"
        ACTIVATE = "activate", "activated"
        RESET = "reset", "reset to defaults"
        CANARY_START = "canary_start", "canary started"
        CANARY_PROMOTE = "canary_promote", "canary promoted"
        CANARY_STOP = "canary_stop", "canary stopped"
        SPEND_LIMIT = "spend_limit", "spend limit changed"

    model_config = models.ForeignKey(ModelConfig, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    version = models.ForeignKey(
        ModelConfigVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The version the change points at (the one activated, the candidate, ...).",
    )
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    comment = models.CharField(max_length=COMMENT_MAX_LENGTH, blank=True, default="")
    data = models.JSONField(default=dict, blank=True, help_text="What changed: the share, the old and new limit.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.model_config.slug}: {self.get_kind_display()}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValidationError("An audit event is history; record a new one instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit events are history and cannot be deleted.")

    @property
    def actor_name(self) -> str | None:
        return self.actor.get_username() if self.actor_id else None
