"""The playground's admin pages (docs/architecture.md#the-playground): thin views over `staging.playground`.

Mounted by stagingsite/urls.py under the admin (`admin.site.admin_view`: staff only) and linked from the
config change page by URL name, since models_config never imports staging.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from models_config.registry import REGISTRY
from models_config.selectors import get_active_config

from . import playground, selectors, storage
from .admin import compare_context
from .errors import ImageRejected, JobInputError, OverrideNotAllowed
from .models import StagingJob

VIEW_PERMS = ("models_config.view_modelconfig", "models_config.change_modelconfig")
RECENT_JOBS = 30


def _job_or_none(raw: str | None, slug: str) -> StagingJob | None:
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return StagingJob.objects.filter(pk=int(text), model_slug=slug, is_try=False).first()


def _cost(raw: str | None) -> Decimal | None:
    try:
        return Decimal((raw or "").strip())
    except InvalidOperation:
        return None


def _render(request: HttpRequest, slug: str, template: str, **extra: Any) -> TemplateResponse:
    spec = REGISTRY[slug]
    context = {
        **admin.site.each_context(request),
        "title": f"Playground: {spec.title}",
        "spec": spec,
        "slug": slug,
        "config_url": reverse("admin:models_config_modelconfig_changelist"),
        **extra,
    }
    return TemplateResponse(request, f"admin/staging/{template}", context)


def playground_view(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the form with the active config as the draft. POST: preview it, or try it once (paid, confirmed)."""
    if slug not in REGISTRY:
        raise Http404(f"No model {slug}.")
    if not any(request.user.has_perm(perm) for perm in VIEW_PERMS):
        raise PermissionDenied
    jobs = StagingJob.objects.filter(model_slug=slug, is_try=False).order_by("-created_at")[:RECENT_JOBS]
    source = _job_or_none(request.POST.get("job") or request.GET.get("job"), slug)
    result: playground.PlaygroundPreview | None = None
    asked_to_try = request.POST.get("action") == "try"
    if request.method != "POST":
        draft_text = json.dumps(get_active_config(slug).config.model_dump(mode="json"), indent=2)
        draft = playground.Draft(slug=slug, config=None, room_type="", style="")
    else:
        draft_text, draft = _posted_draft(request, slug)
        if asked_to_try:
            outcome = _try(request, draft, source)
            if isinstance(outcome, StagingJob):
                target = reverse("staging-playground-result", args=[outcome.pk])
                return HttpResponseRedirect(f"{target}?against={source.pk}" if source else target)
            result = outcome
        else:
            result = playground.preview(draft, source)
    shown = result.replicate_input if result else None
    return _render(
        request,
        slug,
        "playground.html",
        jobs=jobs,
        source=source,
        draft_text=draft_text,
        room_type=draft.room_type,
        style=draft.style,
        instructions=draft.instructions,
        preview=result,
        input_json=storage.redact_signatures(json.dumps(shown, indent=2)) if shown else "",
        unconfirmed=asked_to_try and result is not None and not result.errors,
    )


def _posted_draft(request: HttpRequest, slug: str) -> tuple[str, playground.Draft]:
    """The draft as typed (kept for the page) and parsed; text that is not JSON is refused by `preview`."""
    draft_text = request.POST.get("config", "")
    try:
        config = json.loads(draft_text)
    except ValueError:
        config = None
    draft = playground.Draft(
        slug=slug,
        config=config,
        room_type=request.POST.get("room_type", "").strip() or playground.DEFAULT_ROOM_TYPE,
        style=request.POST.get("style", "").strip() or playground.DEFAULT_STYLE,
        instructions=request.POST.get("instructions", "").strip(),
    )
    return draft_text, draft


def _try(
    request: HttpRequest, draft: playground.Draft, source: StagingJob | None
) -> StagingJob | playground.PlaygroundPreview:
    try:
        return playground.try_draft(
            draft,
            source_job=source,
            upload=request.FILES.get("photo"),
            confirmed_cost=_cost(request.POST.get("confirmed_cost")),
            user=request.user,
        )
    except (JobInputError, ImageRejected, OverrideNotAllowed) as exc:  # nothing was stored
        errors = getattr(exc, "errors", None) or [{"loc": ["photo"], "msg": str(exc), "type": "value_error"}]
        return playground.PlaygroundPreview(errors=errors)


def playground_result_view(request: HttpRequest, job_id: int) -> HttpResponse:
    """A try's outputs beside the delivered output of the job whose photo it used (made with the active or an
    earlier version): the page refreshes itself until the try has ended."""
    job = StagingJob.objects.filter(pk=job_id, is_try=True).first()
    if job is None:
        raise Http404("No such try.")
    if not request.user.has_perm("staging.view_stagingjob"):
        raise PermissionDenied
    against = _job_or_none(request.GET.get("against"), job.model_slug)
    active = get_active_config(job.model_slug)
    return _render(
        request,
        job.model_slug,
        "playground_result.html",
        job=job,
        status=selectors.get_job(job.pk).derived_status,
        attempt=job.latest_attempt,
        mine=compare_context(job),
        against=against,
        theirs=compare_context(against) if against else None,
        active_number=active.version_number,
    )
