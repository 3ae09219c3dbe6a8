"""Admin forms. They validate through `services` and show pydantic's errors under the right inputs.

The config field's schema is built here in `__init__`, from the row's slug, rather than given to
django-jsonform as a callable: a callable schema sees stale data during a POST (upstream issue
#161) and the validator mutates the schema, so every form gets its own fresh adapted schema.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django_jsonform.forms.fields import JSONFormField
from pydantic import ValidationError

from . import models, services
from .jsonform import adapted_schema, map_errors
from .models import COMMENT_MAX_LENGTH, ModelConfig
from .registry import get_spec


def initial_config(row: ModelConfig) -> dict[str, Any]:
    """What the editor starts from: the active version, normalised when it still validates.

    A stored config that no longer validates (the schema changed) is shown as stored, over the
    defaults, so saving it surfaces the problems under the inputs instead of silently dropping them.
    """
    spec = get_spec(row.slug)
    defaults = spec.default_config().model_dump(mode="json")
    if row.active_version_id is None:
        return defaults
    stored = row.active_version.config or {}
    try:
        return spec.resolve_config(stored).model_dump(mode="json")
    except ValidationError:
        return {**defaults, **stored}


# Under the editor when settings are refused. Not django-jsonform's "Please correct the errors below.": the
# admin's error note above already says "Please correct the error below." (docs/architecture.md#look-and-feel).
SETTINGS_INVALID = "Some settings are not valid: each one's message is shown under it."
_WIDGET_GENERIC = "Please correct the errors below."


class ModelConfigForm(forms.ModelForm):
    """Edit a model's config; saving (in the admin) stores a new version through `services`."""

    # A placeholder so the admin's field list accepts the name; replaced per slug in __init__.
    config = JSONFormField(schema={"type": "object", "properties": {}}, label="Configuration")
    comment = forms.CharField(
        widget=forms.TextInput(attrs={"size": 80, "maxlength": COMMENT_MAX_LENGTH}),
        help_text="What changed and why; shown in the version history.",
    )
    base_version = forms.IntegerField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = ModelConfig
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        row = self.instance
        self.slug = row.slug
        self.schema = adapted_schema(row.slug)
        self.fields["config"] = JSONFormField(
            schema=partial(adapted_schema, row.slug), label="Configuration", model_name="modelconfig"
        )
        self.initial.setdefault("config", initial_config(row))
        self.initial.setdefault("base_version", self.active_number)

    def clean_comment(self) -> str:
        try:
            return models.clean_comment(self.cleaned_data["comment"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    @property
    def active_number(self) -> int | None:
        row = self.instance
        return row.active_version.number if row.active_version_id else None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        config = cleaned.get("config")
        if config is None:  # django-jsonform's own validator already put errors under the inputs
            self._reword_widget_error()
            return cleaned
        try:
            cleaned["config"] = services.validate_config(self.slug, config)
        except services.ConfigValidationError as exc:
            self.attach_config_errors(exc.errors)
            return cleaned
        base = cleaned.get("base_version")
        if base != self.active_number:  # checked again, atomically, by save_version(check_base=True)
            self.add_error(None, str(services.VersionConflictError(self.slug, base, self.active_number)))
        return cleaned

    def _reword_widget_error(self) -> None:
        errors = self._errors.get("config") if self._errors else None
        if errors:
            errors.data = [SETTINGS_INVALID if str(e.message) == _WIDGET_GENERIC else e for e in errors.as_data()]

    def attach_config_errors(self, errors: list[dict[str, Any]]) -> None:
        """Put pydantic errors under their inputs (django-jsonform ErrorMap); the rest on the form."""
        error_map, general = map_errors(errors, self.schema)
        if error_map:
            self.fields["config"].add_error(error_map)
            self.add_error("config", SETTINGS_INVALID)
        for message in general:
            self.add_error(None, message)
