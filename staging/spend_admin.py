"""The admin's spend page: spend per UTC day and model as server-rendered bars, today's counters, and the
per-model limits with their edit form (docs/architecture.md#spend-caps).

Registered on `SpendDay` so it appears in the Staging app list; it replaces the change list with one page
and offers no add, change or delete of counter rows. Reading needs view permission on jobs; the form
needs the permission to change a model's config and goes through `set_daily_spend_limit` (audited).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from models_config.models import CHANGE_CONFIG_PERMISSION
from models_config.registry import REGISTRY
from models_config.services import ConfigValidationError, set_daily_spend_limit

from . import spend_selectors
from .models import SpendDay
from .selectors import VIEW_ALL_PERMS


class LimitForm(forms.Form):
    model = forms.ChoiceField(choices=[(slug, spec.title) for slug, spec in REGISTRY.items()])
    limit = forms.DecimalField(
        required=False, min_value=0, decimal_places=2, max_digits=10, help_text="USD per UTC day; empty: no cap."
    )
    comment = forms.CharField(required=False, max_length=500)


@dataclass(frozen=True)
class Bar:
    model: str
    cost: Decimal
    percent: float  # of the largest day-and-model cost in the range


def bars(rows: list[spend_selectors.SpendRow]) -> list[tuple[Any, list[Bar]]]:
    """Per day (newest first), one bar per model, summed over config versions."""
    per_day: dict[Any, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in rows:
        per_day[row.day][row.model] += row.cost
    top = max((cost for models in per_day.values() for cost in models.values()), default=Decimal(0))
    return [
        (day, [Bar(m, c, float(c / top * 100) if top else 0.0) for m, c in sorted(per_day[day].items())])
        for day in sorted(per_day, reverse=True)
    ]


@admin.register(SpendDay)
class SpendAdmin(admin.ModelAdmin):
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return any(request.user.has_perm(perm) for perm in VIEW_ALL_PERMS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        may_change = request.user.has_perm(CHANGE_CONFIG_PERMISSION)
        form = LimitForm(request.POST or None)
        if request.method == "POST":
            if not may_change:
                raise PermissionDenied
            if form.is_valid():
                data = form.cleaned_data
                try:
                    set_daily_spend_limit(data["model"], data["limit"], actor=request.user, comment=data["comment"])
                except ConfigValidationError as exc:
                    for error in exc.errors:
                        form.add_error(error["loc"][0] if error["loc"] else None, error["msg"])
                else:
                    self.message_user(request, f"Daily limit of {data['model']} saved.", messages.SUCCESS)
                    return HttpResponseRedirect(request.path)
        since, until = spend_selectors.default_range(None, None)
        context = {
            **self.admin_site.each_context(request),
            "title": "Spend",
            "opts": self.model._meta,
            "days": bars(spend_selectors.by_day(since, until)),
            "since": since,
            "until": until,
            "today": spend_selectors.today(),
            "limits": spend_selectors.limits_by_model(),
            "form": form if may_change else None,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/staging/spendday/spend.html", context)
