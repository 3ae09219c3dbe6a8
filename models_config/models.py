"""Stored configuration: one `ModelConfig` per registered model, pointing at its active version.

Versions are immutable and numbered per model. Saving creates a new version and activates it;
rollback moves the pointer to an older version and copies nothing, so history stays linear and
"which config did this job use" is always one foreign key away.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .registry import REGISTRY


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
    comment = models.CharField(max_length=500)
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


class ApiToken(models.Model):
    """A personal token for the HTTP API. Only a SHA-256 hash is stored; the token is shown once."""

    PREFIX = "stg_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)
