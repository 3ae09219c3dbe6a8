"""Stored configuration: one `ModelConfig` per registered model, pointing at its active version.

Versions are immutable and numbered per model. Saving creates a new version and activates it;
rollback moves the pointer to an older version and copies nothing, so history stays linear and
"which config did this job use" is always one foreign key away.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
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


class ModelConfig(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    active_version = models.ForeignKey(
        "ModelConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
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
