"""Admin for staging jobs: browse, inspect attempts and outputs, cancel or retry.

Thin on purpose: the list reads through `StagingJob.objects.with_status()` (status is derived, never stored),
the actions call `services.cancel_job` / `reprocessing.start` (after a confirmation page), and everything else
is read-only.
Jobs are created on the workbench (`admin_workbench`, the "Add" page), the `stage` command or the API,
all through `services.create_job`; the original is never deleted here. The attempt token (the webhook's
credential) is never shown.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from . import delivery, reprocessing, selectors, services, storage
from .admin_workbench import WorkbenchMixin
from .errors import OutputNotFound, StagingError
from .models import Attempt, DerivativeKind, JobStatus, StagedImage, StagingJob


def _pretty(value: Any) -> SafeString:
    if value in (None, "", {}, []):
        return mark_safe("<span>-</span>")  # a constant
    # A recorded input holds the photo's signed link: its signature works as a credential until it expires.
    text = storage.redact_signatures(json.dumps(value, indent=2))
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def _output_url(image: StagedImage, attempt_number: int, kind: DerivativeKind | None = None) -> str:
    """The jobs API's link to an output (or its derivative) of one attempt: files are only served where
    permission is checked, and the admin's session authenticates those endpoints as it does this page
    (docs/operations.md#photos-and-outputs)."""
    where = {"job_id": image.attempt.job_id, "index": image.index}
    if kind is None:
        url = reverse("api:job-output", kwargs=where)
    else:
        url = reverse("api:job-output-derivative", kwargs={**where, "kind": kind})
    return f"{url}?attempt={attempt_number}"


def compare_context(job: StagingJob) -> dict[str, Any]:
    """What the job page's comparison shows: the original, and every attempt with its outputs at full size."""
    deliverable = selectors.deliverable(job)
    attempts = []
    for attempt in selectors.attempts_with_outputs(job):
        outputs = [
            {
                "image": image,
                "url": _output_url(image, attempt.number),
                "thumbnail_url": _output_url(image, attempt.number, DerivativeKind.THUMBNAIL)
                if any(d.kind == DerivativeKind.THUMBNAIL for d in image.derivatives.all())
                else _output_url(image, attempt.number),
                "chosen": deliverable is not None and image.pk == deliverable.pk,
            }
            for image in attempt.images.all()
        ]
        attempts.append({"attempt": attempt, "outputs": outputs})
    return {
        "deliverable_url": _output_url(deliverable, deliverable.attempt.number) if deliverable else "",
        "original_url": reverse("api:job-original", kwargs={"job_id": job.pk}),
        "compare_attempts": attempts,
        "deliverable": deliverable,
        "chosen_by_staff": job.chosen_output_id is not None,
    }


class StatusFilter(admin.SimpleListFilter):
    """Filter on the derived status (the `derived_status` annotation of `StagingJob.objects.with_status()`)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(JobStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[StagingJob]) -> QuerySet[StagingJob]:
        value = self.value()
        return queryset.filter(derived_status=value) if value in JobStatus.values else queryset


class TryFilter(admin.SimpleListFilter):
    """Playground tries are left out unless asked for (docs/architecture.md#the-playground)."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("tries", "playground tries"), ("all", "all")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[StagingJob]) -> QuerySet[StagingJob]:
        value = self.value()
        if value == "all":
            return queryset
        return queryset.filter(is_try=value == "tries")


class AttemptInline(admin.StackedInline):
    model = Attempt
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("-number",)
    fields = (
        ("number", "state", "replicate_status", "prediction_id"),
        ("config_version", "config_source", "arm"),
        "input_pretty",
        ("error", "error_class"),
        ("created_at", "submitted_at", "finished_at", "next_retry_at", "deadline"),
        ("predict_time", "cost"),
    )
    readonly_fields = (
        "number",
        "state",
        "replicate_status",
        "prediction_id",
        "config_version",
        "config_source",
        "arm",
        "input_pretty",
        "error",
        "error_class",
        "created_at",
        "submitted_at",
        "finished_at",
        "next_retry_at",
        "deadline",
        "predict_time",
        "cost",
    )

    @admin.display(description="Input sent to Replicate")
    def input_pretty(self, obj: Attempt) -> SafeString:
        return _pretty(obj.input)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StagingJob)
class StagingJobAdmin(WorkbenchMixin, admin.ModelAdmin):
    list_display = ("id", "status_display", "model_slug", "room_type", "style", "created_at")
    list_filter = (StatusFilter, TryFilter, "model_slug", "created_at")
    search_fields = ("=id", "uid", "room_type", "style", "instructions", "attempts__prediction_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("cancel_jobs", "retry_jobs")
    inlines = (AttemptInline,)
    fieldsets = (
        (None, {"fields": ("downloads",)}),
        ("Job", {"fields": (("status_display", "model_slug"), ("room_type", "style"), "instructions", "seed")}),
        ("Config override", {"fields": ("override_pretty",)}),
        ("Details", {"fields": ("uid", "created_by", ("photo_width", "photo_height"), ("created_at", "updated_at"))}),
    )
    readonly_fields = (
        "downloads",
        "status_display",
        "model_slug",
        "room_type",
        "style",
        "instructions",
        "seed",
        "override_pretty",
        "uid",
        "created_by",
        "photo_width",
        "photo_height",
        "created_at",
        "updated_at",
    )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        """Every field is read-only (jobs change through actions), so offer no save buttons ("Add" is the
        workbench, which would otherwise bring "Save and add another"); the template
        (admin/staging/stagingjob/change_form.html) adds every attempt's outputs and the before/after slider."""
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        job = self.get_object(request, object_id)
        if job is not None:
            extra_context.update(compare_context(job))
            extra_context["choose_url"] = reverse("admin:staging_stagingjob_choose", args=[job.pk])
            extra_context["can_choose"] = request.user.has_perm(delivery.CHOOSE_PERMISSION)
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/choose/", wrap(self.choose_view), name="staging_stagingjob_choose"),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def choose_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Mark the posted output (`output=ATTEMPT:INDEX`) as the one to deliver, through `delivery`."""
        back = HttpResponseRedirect(reverse("admin:staging_stagingjob_change", args=[object_id]))
        attempt, _, index = request.POST.get("output", "").partition(":")
        if not (attempt.isascii() and attempt.isdigit() and index.isascii() and index.isdigit()):
            messages.error(request, "Pick an output to deliver.")
            return back
        try:
            delivery.choose_output(object_id, int(index), int(attempt), user=request.user)
        except OutputNotFound as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Output {int(index) + 1} of attempt {attempt} will be delivered.")
        return back

    def get_queryset(self, request: HttpRequest) -> QuerySet[StagingJob]:
        return super().get_queryset(request).with_status()

    @admin.display(description="status", ordering="derived_status")
    def status_display(self, obj: StagingJob) -> str:
        return obj.derived_status  # annotated by get_queryset: no query per row

    @admin.display(description="Config override")
    def override_pretty(self, obj: StagingJob) -> SafeString:
        return _pretty(obj.config_override)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the original photo is kept forever

    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[StagingJob]) -> None:
        for job in queryset:
            try:
                attempt = services.cancel_job(job.pk, reason=f"Canceled in the admin by {request.user}.")
            except StagingError as exc:
                self.message_user(request, f"Job {job.pk}: could not cancel: {exc}", messages.ERROR)
                continue
            if attempt is None or attempt.state != Attempt.State.CANCELED:
                self.message_user(request, f"Job {job.pk}: nothing to cancel, it is {job.status}.", messages.WARNING)
            else:
                self.message_user(request, f"Job {job.pk}: attempt {attempt.number} canceled.", messages.SUCCESS)

    @admin.action(description="Retry the selected jobs (a new paid attempt each)", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[StagingJob]) -> TemplateResponse | None:
        """First a confirmation page (count, estimated total, skipped jobs, preflight problems); only its
        Confirm button spends, through the command's `reprocessing.start`, expecting what the page showed."""
        review = reprocessing.review(list(queryset.values_list("pk", flat=True)))
        if request.POST.get("confirm") != "yes" or review.problems or not review.plans:
            context = {
                **self.admin_site.each_context(request),
                "title": "Retry the selected jobs?",
                "opts": self.model._meta,
                "review": review,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "changelist_url": reverse("admin:staging_stagingjob_changelist"),
            }
            return TemplateResponse(request, "admin/staging/stagingjob/retry_confirmation.html", context)
        policy = services.OverridePolicy.of(request.user)
        for plan in review.plans:
            seen = request.POST.get(f"expected-{plan.job.pk}", "")
            plan.expected = int(seen) if seen.isdigit() else plan.expected
            try:
                attempt = reprocessing.start(plan, policy)
            except StagingError as exc:
                self.message_user(request, f"Job {plan.job.pk}: not retried: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"Job {plan.job.pk}: attempt {attempt.number} queued.", messages.SUCCESS)
        return None


from . import spend_admin  # noqa: E402, F401  the spend page, registered on SpendDay
