"""The Django admin is the configuration UI: edit, history, diff, rollback, reset, preview and canary.

The change page shows one history, the audit events (`selectors.events_of`); Django's own "History"
button leads there too. The metrics table beside it comes from staging through `hooks.version_metrics`.

The admin classes are thin: every write goes through `services`, every read through `selectors`
or `views`. Staff with only the view permission see the same pages read-only; the custom POST
views check the change permission themselves and answer 403 otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from django_jsonform.widgets import JSONFormWidget

from . import canary, services
from .forms import ModelConfigForm, initial_config
from .hooks import version_metrics
from .jsonform import adapted_schema
from .models import ModelConfig
from .registry import REGISTRY
from .selectors import SAMPLE_REQUEST, events_of, model_configs, preview_input, version_diff, versions_of
from .worddiff import highlight

_FAILED_SAVE = "_models_config_save_failed"
_SAVED = "_models_config_saved"


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    form = ModelConfigForm
    list_display = ["title", "slug", "active_number", "canary_display", "active_comment", "active_author", "updated_at"]
    list_display_links = ["title", "slug"]
    search_fields = ["slug"]

    # --- list -----------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest):
        return model_configs().select_related("active_version__author", "candidate_version")

    @admin.display(description="model", ordering="slug")
    def title(self, obj: ModelConfig) -> str:
        spec = REGISTRY.get(obj.slug)
        return spec.title if spec else f"{obj.slug} (not registered)"

    @admin.display(description="active version", ordering="active_version__number")
    def active_number(self, obj: ModelConfig) -> str:
        return f"v{obj.active_version.number}" if obj.active_version_id else "—"

    @admin.display(description="canary")
    def canary_display(self, obj: ModelConfig) -> str:
        """A running canary is seen in the list, not only on the model's page (docs/architecture.md#canary)."""
        if not obj.candidate_version_id:
            return "—"
        return f"v{obj.candidate_version.number} on {obj.canary_share:.1%} of new jobs"

    @admin.display(description="comment")
    def active_comment(self, obj: ModelConfig) -> str:
        return obj.active_version.comment if obj.active_version_id else ""

    @admin.display(description="author")
    def active_author(self, obj: ModelConfig) -> str:
        version = obj.active_version
        return str(version.author) if version and version.author else "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from the registry (services.ensure_config_rows)

    def has_delete_permission(self, request: HttpRequest, obj: ModelConfig | None = None) -> bool:
        return False

    # --- change page ----------------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: ModelConfig | None = None):
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": ["config_readonly"]})]
        return [(None, {"fields": ["config", "comment", "base_version"]})]

    @admin.display(description="configuration")
    def config_readonly(self, obj: ModelConfig) -> str:
        """The same editor, disabled: view-only staff read the config the way editors see it."""
        widget = JSONFormWidget(schema=adapted_schema(obj.slug))
        return widget.render("config", json.dumps(initial_config(obj)), attrs={"id": "id_config", "disabled": True})

    @property
    def media(self):
        return super().media + JSONFormWidget(schema={}).media  # also for the read-only editor

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context.update(self._history_context(request, obj))
        return super().change_view(request, object_id, form_url, context)

    def _history_context(self, request: HttpRequest, obj: ModelConfig) -> dict[str, Any]:
        active = obj.active_version.number if obj.active_version_id else None
        candidate = obj.candidate_version.number if obj.candidate_version_id else None
        names = ("diff", "preview", "reset", "canary_start", "canary_promote", "canary_stop")
        return {
            "versions": list(versions_of(obj.slug)),
            "events": list(events_of(obj.slug)),
            "metrics": version_metrics(obj.slug),
            "active_number": active,
            "candidate_number": candidate,
            "canary_share": obj.canary_share,
            "can_change_config": self.has_change_permission(request, obj),
            "spec": REGISTRY.get(obj.slug),
            "urls": {name: self._url(name, obj) for name in names},
        }

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None):
        """Django's "History" button: the change page's audit history, so there is one history, not two."""
        obj = self._get_allowed(request, object_id, write=False)
        return HttpResponseRedirect(self._url("change", obj) + "#config-history")

    def save_model(self, request: HttpRequest, obj: ModelConfig, form: ModelConfigForm, change: bool) -> None:
        try:
            saved = services.store_config(
                obj.slug,
                form.cleaned_data["config"],
                author=request.user,
                comment=form.cleaned_data["comment"],
                base_version=form.cleaned_data.get("base_version"),
                check_base=True,
            )
        except services.ConfigError as exc:  # lost a race after the form's own checks passed
            messages.error(request, str(exc))
            setattr(request, _FAILED_SAVE, True)
            return
        obj.refresh_from_db()
        setattr(request, _SAVED, saved)

    def message_user(self, request: HttpRequest, message: str, *args: Any, **kwargs: Any) -> None:
        """Replace Django's generic "was changed successfully" with what the save did."""
        saved: services.Saved | None = getattr(request, _SAVED, None)
        if saved is None:
            return super().message_user(request, message, *args, **kwargs)
        number = saved.version.number
        if saved.created:
            messages.success(request, f"Saved v{number} and made it active.")
        else:
            messages.info(request, f"Nothing changed: the config equals the active v{number}; no version was created.")

    def response_change(self, request: HttpRequest, obj: ModelConfig) -> HttpResponse:
        if getattr(request, _FAILED_SAVE, False):
            return HttpResponseRedirect(self._url("change", obj))
        return super().response_change(request, obj)

    # --- custom views ---------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/diff/", wrap(self.diff_view), name=f"{prefix}_diff"),
            path("<path:object_id>/preview/", wrap(self.preview_view), name=f"{prefix}_preview"),
            path("<path:object_id>/reset/", wrap(self.reset_view), name=f"{prefix}_reset"),
            path("<path:object_id>/canary/start/", wrap(self.canary_start_view), name=f"{prefix}_canary_start"),
            path("<path:object_id>/canary/promote/", wrap(self.canary_promote_view), name=f"{prefix}_canary_promote"),
            path("<path:object_id>/canary/stop/", wrap(self.canary_stop_view), name=f"{prefix}_canary_stop"),
            path(
                "<path:object_id>/versions/<int:number>/activate/",
                wrap(self.activate_view),
                name=f"{prefix}_activate",
            ),
            *super().get_urls(),
        ]

    def _url(self, name: str, obj: ModelConfig, *args: Any) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=[obj.pk, *args])

    def _get_allowed(self, request: HttpRequest, object_id: str, *, write: bool) -> ModelConfig:
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404("No such model configuration.")
        allowed = self.has_change_permission(request, obj) if write else self.has_view_permission(request, obj)
        if not allowed:
            raise PermissionDenied
        return obj

    def _page(self, request: HttpRequest, obj: ModelConfig, template: str, title: str, **extra: Any):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": obj,
            "title": title,
            "change_url": self._url("change", obj),
            **extra,
        }
        return TemplateResponse(request, f"admin/models_config/modelconfig/{template}", context)

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Changes from version `a` to version `b` (default: the active one)."""
        obj = self._get_allowed(request, object_id, write=False)
        active = obj.active_version.number if obj.active_version_id else None
        old_number = version_number(request.GET.get("a"))
        new_number = version_number(request.GET.get("b")) if request.GET.get("b") else (active or 0)
        if old_number is None or new_number is None:
            raise Http404("Give the versions to compare as ?a=N[&b=M].")
        diff = version_diff(obj.slug, old_number, new_number)
        if diff is None:
            raise Http404(f"{obj.slug} has no version {old_number} or {new_number}.")
        title = f"{obj}: changes from v{old_number} to v{new_number}"
        rows = [(change.key, *highlight(change.old, change.new)) for change in diff.changes]
        return self._page(
            request,
            obj,
            "diff.html",
            title,
            diff=diff,
            rows=rows,
            active_number=active,
            versions=list(versions_of(obj.slug)),
            diff_url=self._url("diff", obj),
        )

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The Replicate input for the sample job: of the posted draft (POST) or a stored version (GET)."""
        obj = self._get_allowed(request, object_id, write=request.method == "POST")
        if request.method == "POST":
            draft, source = parse_draft(request.POST.get("config")), "the draft in the editor"
        else:
            raw = request.GET.get("version")
            number = version_number(raw)
            if raw and number is None:
                raise Http404("Give the version to preview as ?version=N.")
            version = obj.active_version if not raw else versions_of(obj.slug).filter(number=number).first()
            if version is None:
                raise Http404("No such version.")
            draft, source = version.config, f"v{version.number}"
        preview = preview_input(obj.slug, draft)
        title = f"{obj}: Replicate input preview"
        return self._page(request, obj, "preview.html", title, preview=preview, source=source, sample=SAMPLE_REQUEST)

    @staticmethod
    def _posted_base(request: HttpRequest) -> tuple[int | None, bool]:
        """(base_version, check it): not posted or blank means no check; anything but a number raises."""
        raw = request.POST.get("base_version", "").strip()
        if not raw:
            return None, False
        number = version_number(raw)
        if number is None:
            raise services.ConfigError("The posted base_version is not a version number; reload the page and retry.")
        return number, True

    @method_decorator(require_POST)
    def activate_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        """Rollback: make an older version active (optimistic locking on the posted base_version)."""
        obj = self._get_allowed(request, object_id, write=True)
        try:
            base, check = self._posted_base(request)
            services.activate_version(
                obj.slug,
                number,
                base_version=base,
                check_base=check,
                actor=request.user,
                comment=request.POST.get("comment", ""),
            )
        except services.ConfigError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Made v{number} of {obj.slug} active again.")  # capfirst would print "V2"
        return HttpResponseRedirect(self._url("change", obj))

    @method_decorator(require_POST)
    def reset_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Store the code defaults as a new version (a reset is history too)."""
        obj = self._get_allowed(request, object_id, write=True)
        comment = request.POST.get("comment", "").strip() or services.RESET_COMMENT
        try:
            base, check = self._posted_base(request)
            saved = services.reset_to_defaults(
                obj.slug, author=request.user, comment=comment, base_version=base, check_base=check
            )
        except services.ConfigError as exc:
            messages.error(request, str(exc))
        else:
            number = saved.version.number
            if saved.created:
                messages.success(request, f"Saved the code defaults as {obj.slug} v{number}.")
            else:
                messages.info(request, f"Nothing changed: the code defaults are active already (v{number}).")
        return HttpResponseRedirect(self._url("change", obj))

    # --- canary (docs/architecture.md#canary) ---------------------------------------------------------

    def _canary_action(self, request: HttpRequest, object_id: str, act: Any) -> HttpResponse:
        """Run one canary service with the posted comment; its refusal becomes a message on the page."""
        obj = self._get_allowed(request, object_id, write=True)
        try:
            done = act(obj.slug, request.POST.get("canary_comment", ""))
        except services.ConfigError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, done)
        return HttpResponseRedirect(self._url("change", obj) + "#canary")

    @method_decorator(require_POST)
    def canary_start_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def start(slug: str, comment: str) -> str:
            number = version_number(request.POST.get("canary_version"))
            if number is None:
                raise services.ConfigError("Choose the candidate version.")
            share = request.POST.get("canary_share", "")
            row = canary.start_canary(slug, number, share, actor=request.user, comment=comment)
            return f"Canary started: v{number} takes {row.canary_share} of the new jobs."

        return self._canary_action(request, object_id, start)

    @method_decorator(require_POST)
    def canary_promote_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def promote(slug: str, comment: str) -> str:
            version = canary.promote_canary(slug, actor=request.user, comment=comment)
            return f"v{version.number} is the active version now; the canary has ended."

        return self._canary_action(request, object_id, promote)

    @method_decorator(require_POST)
    def canary_stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def stop(slug: str, comment: str) -> str:
            version = canary.stop_canary(slug, actor=request.user, comment=comment)
            return f"Canary of v{version.number} stopped: every new job runs on the active version."

        return self._canary_action(request, object_id, stop)


def version_number(raw: str | None) -> int | None:
    """A version number typed in a URL or posted by a form; None unless it is ASCII digits.

    `int()` alone is not the check: it refuses "²" with a ValueError (a 500 in a view) and reads "٣" as 3.
    """
    text = (raw or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def parse_draft(raw: str | None) -> Any:
    """The draft as posted by the config widget's hidden textarea; None when it is not JSON."""
    try:
        return json.loads(raw or "")
    except ValueError:
        return None
