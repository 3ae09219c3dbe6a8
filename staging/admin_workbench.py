"""The staff workbench in the admin: stage photos or a whole listing, see the cost first, watch jobs run.

The job list's "Add" opens the upload page (`WorkbenchMixin.add_view`); a listing's page shows its jobs
updating live and offers "stage all", "reprocess all" (priced before it is confirmed) and the exports.
Everything here is a view over `listings` and `services`: the cost comes from `listings.estimate_cost`
(the registry's `ModelSpec.estimate_cost`), the jobs from `listings.create_listing` / `services.create_job`,
and the pages poll a small JSON status view every two seconds (docs/architecture.md#the-workbench).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE
from models_config.registry import REGISTRY
from models_config.schemas import MAX_INSTRUCTIONS_CHARS, MAX_ROOM_TYPE_CHARS, MAX_STYLE_CHARS

from . import derivatives, listings, selectors, services
from .errors import StagingError
from .models import DerivativeKind, Listing, StagingJob
from .selectors import CHANGE_PERM, CREATE_PERM, VIEW_ALL_PERMS

TERMINAL = ("succeeded", "failed", "canceled")


def _model_choices() -> list[tuple[str, str]]:
    return [(slug, f"{spec.title} ({slug})") for slug, spec in REGISTRY.items()]


class WorkbenchForm(forms.Form):
    """What the upload page asks; the photos themselves come from `request.FILES.getlist("images")`."""

    name = forms.CharField(max_length=200, required=False, help_text="Name a listing to group the photos.")
    model = forms.ChoiceField(choices=_model_choices)
    style = forms.CharField(max_length=MAX_STYLE_CHARS, initial=DEFAULT_STYLE)
    instructions = forms.CharField(max_length=MAX_INSTRUCTIONS_CHARS, required=False, widget=forms.Textarea)
    estimated_cost = forms.DecimalField(required=False, widget=forms.HiddenInput)


def _money(amount: Decimal) -> str:
    return f"${amount:.2f}"


def _can_view(request: HttpRequest) -> bool:
    return any(request.user.has_perm(perm) for perm in VIEW_ALL_PERMS)


def job_rows(jobs: QuerySet[StagingJob]) -> list[dict[str, Any]]:
    """Each job's status and download links, for the live table (the same dict as JSON and in the template)."""
    rows = []
    for job in jobs.with_status().order_by("pk"):
        outputs = []
        for image in selectors.outputs_of(job):
            where = {"job_id": job.pk, "index": image.index}
            clean = reverse("api:job-output", kwargs=where)
            thumb = derivatives.get_derivative(image, DerivativeKind.THUMBNAIL)
            outputs.append(
                {
                    "clean": clean,
                    "labelled": f"{clean}?label=default",
                    "thumbnail": reverse("api:job-output-derivative", kwargs={**where, "kind": thumb.kind})
                    if thumb
                    else clean,
                }
            )
        latest = job.attempts.order_by("-number").first()
        rows.append(
            {
                "id": job.pk,
                "url": reverse("admin:staging_stagingjob_change", args=[job.pk]),
                "room_type": job.room_type,
                "style": job.style,
                "model": job.model_slug,
                "status": job.derived_status,
                "error": latest.error if latest and job.derived_status == "failed" else "",
                "original": reverse("api:job-original", kwargs={"job_id": job.pk}),
                "outputs": outputs,
            }
        )
    return rows


def _live_context(request: HttpRequest, jobs: QuerySet[StagingJob]) -> dict[str, Any]:
    ids = ",".join(str(pk) for pk in jobs.values_list("pk", flat=True))
    return {
        "rows": job_rows(jobs),
        "status_url": f"{reverse('admin:staging_stagingjob_workbench_status')}?ids={ids}",
    }


class WorkbenchMixin:
    """Added to `StagingJobAdmin`: the add page is the workbench, plus its JSON views and download links."""

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "workbench/estimate/",
                self.admin_site.admin_view(self.estimate_view),
                name="staging_stagingjob_estimate",
            ),
            path(
                "workbench/status/",
                self.admin_site.admin_view(self.status_view),
                name="staging_stagingjob_workbench_status",
            ),
            path(
                "workbench/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="staging_stagingjob_workbench_progress",
            ),
        ]
        return extra + super().get_urls()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CREATE_PERM)

    def estimate_view(self, request: HttpRequest) -> JsonResponse:
        """`?model=&photos=`: what staging that many photos costs at most with the model's active config."""
        if not request.user.has_perm(CREATE_PERM):
            raise PermissionDenied
        try:
            photos = max(0, int(request.GET.get("photos", "1")))
            total = listings.estimate_cost(request.GET.get("model", ""), photos)
        except (ValueError, StagingError) as exc:
            return JsonResponse({"detail": str(exc)}, status=422)
        return JsonResponse({"photos": photos, "total": str(total), "display": _money(total)})

    def status_view(self, request: HttpRequest) -> JsonResponse:
        """`?ids=1,2,3`: the live table's rows; polled every two seconds by staging/static/staging/live.js."""
        if not _can_view(request):
            raise PermissionDenied
        try:
            ids = [int(part) for part in request.GET.get("ids", "").split(",") if part]
        except ValueError:
            return JsonResponse({"detail": "ids must be job ids separated by commas."}, status=422)
        rows = job_rows(StagingJob.objects.filter(pk__in=ids[:500]))
        return JsonResponse({"jobs": rows, "done": all(row["status"] in TERMINAL for row in rows)})

    def progress_view(self, request: HttpRequest) -> HttpResponse:
        if not _can_view(request):
            raise PermissionDenied
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.isdigit()]
        context = {
            **self.admin_site.each_context(request),
            "title": "Staging progress",
            **_live_context(request, StagingJob.objects.filter(pk__in=ids)),
        }
        return render(request, "admin/staging/workbench_progress.html", context)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None):
        """The upload page. A POST carries the cost the person saw; if it no longer matches (another model,
        more photos, a config change meanwhile), nothing is created and the page asks again with the new cost."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        listing = (
            Listing.objects.filter(pk=request.GET["listing"]).first()
            if request.GET.get("listing", "").isdigit()
            else None
        )
        initial = {"name": listing.name, "model": listing.model_slug, "style": listing.style} if listing else {}
        form = WorkbenchForm(request.POST or None, initial=initial)
        if listing is not None:  # its photos share its model and style (docs/architecture.md#listings)
            for name in ("name", "model", "style"):
                form.fields[name].disabled = True
        files = request.FILES.getlist("images") if request.method == "POST" else []
        room_types = request.POST.getlist("room_types")
        estimate: Decimal | None = None
        if request.method == "POST" and form.is_valid():
            if not files:
                form.add_error(None, "Choose or drop at least one photo.")
            elif any(len(room_type) > MAX_ROOM_TYPE_CHARS for room_type in room_types):
                form.add_error(None, f"A room type is at most {MAX_ROOM_TYPE_CHARS} characters.")
            else:
                cost = listings.check_confirmed_cost(
                    form.cleaned_data["model"], len(files), form.cleaned_data["estimated_cost"]
                )
                estimate = cost.estimate
                if not cost.confirmed:
                    form.add_error(
                        None,
                        f"Staging {len(files)} photo(s) with {form.cleaned_data['model']} costs up to "
                        f"{_money(estimate)}. Choose the photos again and confirm this cost.",
                    )
                else:
                    created = self._create(request, form.cleaned_data, files, room_types, listing)
                    if created is not None:
                        return created
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add photos to {listing.name}" if listing else "Stage photos",
            "listing": listing,
            "form": form,
            "opts": StagingJob._meta,
            "estimate_url": reverse("admin:staging_stagingjob_estimate"),
            "prices": [(slug, _money(listings.estimate_cost(slug, 1))) for slug in REGISTRY],
            "estimate": _money(estimate) if estimate is not None else "",
            "default_room_type": DEFAULT_ROOM_TYPE,
        }
        return render(request, "admin/staging/workbench.html", context)

    def _create(
        self,
        request: HttpRequest,
        data: dict[str, Any],
        files: list[Any],
        room_types: list[str],
        listing: Listing | None,
    ) -> HttpResponse | None:
        photos = [
            listings.Photo(file, (room_types[i] if i < len(room_types) else "") or DEFAULT_ROOM_TYPE)
            for i, file in enumerate(files)
        ]
        policy = services.OverridePolicy.of(request.user)
        try:
            if listing is not None:  # the form's model and style are the listing's (shown, not changeable)
                listings.add_photos(
                    listing, photos, instructions=data["instructions"], policy=policy, created_by=request.user
                )
                self.message_user(request, f"{len(photos)} photo(s) added to listing {listing.name!r}.")
                return HttpResponseRedirect(reverse("admin:staging_listing_change", args=[listing.pk]))
            if data["name"] or len(photos) > 1:
                listing = listings.create_listing(
                    data["name"] or f"Upload by {request.user.get_username()}",
                    data["model"],
                    photos,
                    style=data["style"],
                    instructions=data["instructions"],
                    created_by=request.user,
                    policy=policy,
                )
                self.message_user(request, f"{len(photos)} photos queued in listing {listing.name!r}.")
                return HttpResponseRedirect(reverse("admin:staging_listing_change", args=[listing.pk]))
            job = services.create_job(
                photos[0].file,
                data["model"],
                room_type=photos[0].room_type,
                style=data["style"],
                instructions=data["instructions"],
                policy=policy,
                created_by=request.user,
            )
        except StagingError as exc:
            self.message_user(request, f"Nothing was staged: {_describe(exc)}", messages.ERROR)
            return None
        self.message_user(request, f"Job {job.pk} queued.")
        return HttpResponseRedirect(f"{reverse('admin:staging_stagingjob_workbench_progress')}?ids={job.pk}")

    @admin.display(description="Downloads")
    def downloads(self, obj: StagingJob) -> SafeString:
        """The original, and each staged output clean or with the disclosure label."""
        (row,) = job_rows(StagingJob.objects.filter(pk=obj.pk))
        links = format_html_join(
            " · ",
            '<a href="{}">staged {} (clean)</a> · <a href="{}">staged {} (labelled)</a>',
            ((out["clean"], n, out["labelled"], n) for n, out in enumerate(row["outputs"], start=1)),
        )
        return format_html('<a href="{}">original</a> · {}', row["original"], links or "no staged output yet")


def _describe(exc: StagingError) -> str:
    errors = getattr(exc, "errors", [])
    if errors:
        return "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in errors)
    return str(exc)


class ReprocessForm(forms.Form):
    model = forms.ChoiceField(choices=_model_choices)
    style = forms.CharField(max_length=MAX_STYLE_CHARS)


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    """A listing is its jobs: the jobs' permissions apply, and every change goes through `listings`."""

    list_display = ("name", "model_slug", "style", "photos", "created_at")
    search_fields = ("name",)
    readonly_fields = ("name", "model_slug", "style", "seed", "created_by", "created_at", "exports")
    fields = readonly_fields
    actions = ("stage_all", "reprocess_all", "export_clean", "export_labelled")
    change_form_template = "admin/staging/listing/change_form.html"

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:listing_id>/reprocess/",
                self.admin_site.admin_view(self.reprocess_view),
                name="staging_listing_reprocess",
            )
        ]
        return extra + super().get_urls()

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _can_view(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CREATE_PERM)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(CHANGE_PERM)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its photos are kept forever

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None):
        return HttpResponseRedirect(reverse("admin:staging_stagingjob_add"))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        listing = self.get_object(request, object_id)
        extra = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        if listing is not None:
            extra.update(_live_context(request, listing.jobs.all()))
            extra["reprocess_url"] = reverse("admin:staging_listing_reprocess", args=[listing.pk])
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="photos")
    def photos(self, obj: Listing) -> int:
        return obj.jobs.count()

    @admin.display(description="Export")
    def exports(self, obj: Listing) -> SafeString:
        url = reverse("api:listing-export", kwargs={"listing_id": obj.pk})
        return format_html(
            '<a class="button" href="{}?label=none">Export clean (zip)</a> '
            '<a class="button" href="{}?label=default">Export with "Virtually Staged" labels (zip)</a>',
            url,
            url,
        )

    @admin.action(
        description="Stage all photos without a staged output (failed or canceled ones)", permissions=["change"]
    )
    def stage_all(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        for listing in queryset:
            result = listings.stage_all(listing.pk, services.OverridePolicy.of(request.user))
            self.message_user(request, f"{listing.name}: {len(result.queued)} photo(s) queued again.")

    @admin.action(
        description="Reprocess all photos (choose style and model, see the cost first)", permissions=["change"]
    )
    def reprocess_all(self, request: HttpRequest, queryset: QuerySet[Listing]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Choose one listing to reprocess.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:staging_listing_reprocess", args=[queryset.get().pk]))

    @admin.action(description="Export the photos, clean (zip)", permissions=["view"])
    def export_clean(self, request: HttpRequest, queryset: QuerySet[Listing]) -> HttpResponse | None:
        return self._export(request, queryset, "none")

    @admin.action(description='Export the photos with the "Virtually Staged" label (zip)', permissions=["view"])
    def export_labelled(self, request: HttpRequest, queryset: QuerySet[Listing]) -> HttpResponse | None:
        return self._export(request, queryset, "default")

    def _export(self, request: HttpRequest, queryset: QuerySet[Listing], label: str) -> HttpResponse | None:
        """The jobs API's export (one zip per listing), so the file is served where permission is checked."""
        if queryset.count() != 1:
            self.message_user(request, "Choose one listing to export.", messages.WARNING)
            return None
        url = reverse("api:listing-export", kwargs={"listing_id": queryset.get().pk})
        return HttpResponseRedirect(f"{url}?label={label}")

    def reprocess_view(self, request: HttpRequest, listing_id: int) -> HttpResponse:
        """Ask for the style and model, show what it costs, and reprocess only once that cost is confirmed."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        listing = Listing.objects.get(pk=listing_id)
        form = ReprocessForm(request.POST or None, initial={"model": listing.model_slug, "style": listing.style})
        estimate = None
        if request.method == "POST" and form.is_valid():
            cost = listings.check_confirmed_cost(
                form.cleaned_data["model"], listing.jobs.count(), request.POST.get("confirmed_cost")
            )
            estimate = cost.estimate
            if cost.confirmed:
                result = listings.reprocess_all(
                    listing.pk,
                    style=form.cleaned_data["style"],
                    model=form.cleaned_data["model"],
                    policy=services.OverridePolicy.of(request.user),
                )
                skipped = "".join(f" Job {pk} skipped: {why}" for pk, why in result.skipped.items())
                self.message_user(request, f"{len(result.queued)} photo(s) queued for reprocessing.{skipped}")
                return HttpResponseRedirect(reverse("admin:staging_listing_change", args=[listing.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reprocess {listing.name}",
            "opts": Listing._meta,
            "listing": listing,
            "form": form,
            "estimate": estimate,
            "estimate_display": _money(estimate) if estimate is not None else "",
            "photos": listing.jobs.count(),
        }
        return render(request, "admin/staging/listing/reprocess.html", context)
