"""Admin for staging jobs: browse, inspect attempts and outputs, cancel or retry.

Thin on purpose: the list reads through `StagingJob.objects.with_status()` (status is derived, never stored),
the actions call `services.cancel_job` / `services.retry_job`, and everything else is read-only.
Jobs are created through the `stage` command or the API (the photo must pass `images.check_upload`),
so there is no add form, and the original is never deleted here. The attempt token (the webhook's
credential) is never shown.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from . import derivatives, selectors, services, storage
from .errors import StagingError
from .models import Attempt, DerivativeKind, JobStatus, StagedImage, StagingJob


def _pretty(value: Any) -> SafeString:
    if value in (None, "", {}, []):
        return mark_safe("<span>-</span>")  # a constant
    # A recorded input holds the photo's signed link: its signature works as a credential until it expires.
    text = storage.redact_signatures(json.dumps(value, indent=2))
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def _output_url(image: StagedImage, kind: DerivativeKind | None = None) -> str:
    """The jobs API's link to an output (or its derivative): files are only served where permission is checked.

    The admin's session authenticates those endpoints as it does this page (docs/operations.md#photos-and-outputs).
    """
    where = {"job_id": image.attempt.job_id, "index": image.index}
    if kind is None:
        return reverse("api:job-output", kwargs=where)
    return reverse("api:job-output-derivative", kwargs={**where, "kind": kind})


class StatusFilter(admin.SimpleListFilter):
    """Filter on the derived status (the `derived_status` annotation of `StagingJob.objects.with_status()`)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(JobStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[StagingJob]) -> QuerySet[StagingJob]:
        value = self.value()
        return queryset.filter(derived_status=value) if value in JobStatus.values else queryset


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
class StagingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "status_display", "model_slug", "room_type", "style", "created_at")
    list_filter = (StatusFilter, "model_slug", "created_at")
    search_fields = ("=id", "uid", "room_type", "style", "instructions", "attempts__prediction_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("cancel_jobs", "retry_jobs")
    inlines = (AttemptInline,)
    fieldsets = (
        (None, {"fields": ("images",)}),
        ("Job", {"fields": (("status_display", "model_slug"), ("room_type", "style"), "instructions", "seed")}),
        ("Config override", {"fields": ("override_pretty",)}),
        ("Details", {"fields": ("uid", ("photo_width", "photo_height"), ("created_at", "updated_at"))}),
    )
    readonly_fields = (
        "images",
        "status_display",
        "model_slug",
        "room_type",
        "style",
        "instructions",
        "seed",
        "override_pretty",
        "uid",
        "photo_width",
        "photo_height",
        "created_at",
        "updated_at",
    )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        """Every field is read-only (jobs change through actions), so offer no save buttons."""
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[StagingJob]:
        return super().get_queryset(request).with_status()

    @admin.display(description="status", ordering="derived_status")
    def status_display(self, obj: StagingJob) -> str:
        return obj.derived_status  # annotated by get_queryset: no query per row

    @admin.display(description="Config override")
    def override_pretty(self, obj: StagingJob) -> SafeString:
        return _pretty(obj.config_override)

    @admin.display(description="Original and staged")
    def images(self, obj: StagingJob) -> SafeString:
        """The original beside the latest succeeded attempt's outputs; thumbnails link to full files.

        Every image comes from the jobs API's file endpoints, which check the viewer's permission.
        """
        figure = (
            '<figure style="display:inline-block;margin:0 12px 12px 0;vertical-align:top">'
            '<a href="{}" target="_blank"><img src="{}" alt="{}" style="max-width:320px;max-height:320px"></a>'
            "<figcaption>{}</figcaption></figure>"
        )
        original_url = reverse("api:job-original", kwargs={"job_id": obj.pk})
        original = format_html(figure, original_url, original_url, "original", "Original")
        outputs = selectors.outputs_of(obj)
        staged = format_html_join(
            "",
            figure,
            (
                (
                    _output_url(image),
                    _output_url(image, DerivativeKind.THUMBNAIL)
                    if derivatives.get_derivative(image, DerivativeKind.THUMBNAIL)
                    else _output_url(image),
                    f"output {image.index + 1}",
                    f"Staged {image.index + 1} ({image.width}x{image.height})",
                )
                for image in outputs
            ),
        )
        if not outputs:
            staged = format_html("<p>No stored outputs yet (status: {}).</p>", obj.status)
        return format_html('<div class="staging-images">{}{}</div>', original, staged)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs come from `manage.py stage` or the API, which validate the photo

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
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[StagingJob]) -> None:
        for job in queryset:
            try:
                attempt = services.retry_job(job.pk)
            except StagingError as exc:
                self.message_user(request, f"Job {job.pk}: not retried: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"Job {job.pk}: attempt {attempt.number} queued.", messages.SUCCESS)
