"""Personal API tokens in the admin: each user creates their own; the raw token is shown exactly once."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html

from . import services
from .forms import ApiTokenForm
from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Superusers see every token, other staff only their own; only the name can be changed."""

    form = ApiTokenForm
    list_display = ["name", "user", "created_at", "last_used_at"]
    readonly_fields = ["user", "created_at", "last_used_at"]

    def get_queryset(self, request: HttpRequest):
        queryset = super().get_queryset(request).select_related("user")
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return ["name"] if obj is None else ["name", "user", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: ApiTokenForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)  # renaming only
            return
        token, raw = services.create_api_token(request.user, form.cleaned_data["name"])
        obj.pk, obj.user, obj.token_hash, obj.created_at = token.pk, token.user, token.token_hash, token.created_at
        obj._state.adding = False
        messages.warning(
            request,
            format_html(
                "Your new API token is <code id='new-api-token'>{}</code>. Copy it now: it is not stored and "
                "will not be shown again. Send it as <code>Authorization: Bearer &lt;token&gt;</code>.",
                raw,
            ),
        )
