"""Personal API tokens in the admin: each user creates their own; the raw token is shown exactly once.

Neither the token nor its hash is ever shown again; a token is revoked (kept, refused from then on),
not edited, when it may have leaked.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from . import services
from .forms import ApiTokenForm, ApiTokenRenameForm
from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Superusers see every token, other staff only their own; only the name can be changed."""

    form = ApiTokenForm
    list_display = ["name", "user", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = ["user", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return services.manageable_tokens(request.user)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["name", "scopes", "expires_at"]
        return ["name", "user", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs):
        if obj is not None:
            kwargs["form"] = ApiTokenRenameForm
        return super().get_form(request, obj, change, **kwargs)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        """Who may make tokens may revoke them (only the ones `get_queryset` shows them)."""
        return self.has_add_permission(request) or self.has_change_permission(request)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: ApiTokenForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)  # renaming only
            return
        token, raw = services.create_api_token(
            request.user, form.cleaned_data["name"], form.cleaned_data["scopes"], form.cleaned_data["expires_at"]
        )
        obj.pk, obj.user, obj.token_hash, obj.created_at = token.pk, token.user, token.token_hash, token.created_at
        obj.scopes, obj.expires_at = token.scopes, token.expires_at
        obj._state.adding = False
        messages.warning(
            request,
            format_html(
                "Your new API token is <code id='new-api-token'>{}</code>. Copy it now: it is not stored and "
                "will not be shown again. Send it as <code>Authorization: Bearer &lt;token&gt;</code>.",
                raw,
            ),
        )

    @admin.action(description="Revoke the selected tokens (for good)", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = services.revoke_tokens(queryset)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
