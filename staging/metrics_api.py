"""`GET /api/v1/admin/models/{slug}/config/metrics`: per config version, how jobs went (staging.metrics).

A router of the staging app mounted beside the config API, so models_config never imports staging.
"""

from __future__ import annotations

from decimal import Decimal

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from api.auth import require_perm
from api.schemas import error_responses
from models_config.api import VIEW_PERMS  # whoever may read a config may read how it did

from . import metrics
from .schemas import Moment

router = Router(tags=["model configuration"])


class VersionMetricsOut(Schema):
    version: int | None = Field(description="The config version; null for attempts that ran on the code defaults.")
    arm: str = Field(description="'active' or 'candidate' (a canary): a version run on both arms is two rows.")
    attempts: int
    succeeded: int
    failed_transient: int
    failed_permanent: int
    canceled: int
    in_progress: int
    success_rate: float | None = Field(description="Succeeded out of finished attempts.")
    predict_p50: float | None = Field(description="Seconds of model time (Replicate's predict_time).")
    predict_p95: float | None
    end_to_end_p50: float | None = Field(description="Seconds from the job's creation to the outputs stored.")
    end_to_end_p95: float | None
    images: int
    cost: Decimal = Field(description="USD actually spent.")
    compared_with: int | None = Field(description="The previous version, to compare with.")


@router.get(
    "/{slug}/config/metrics",
    response={200: list[VersionMetricsOut], **error_responses(404, 422)},
    summary="Outcomes, times, images and cost per config version",
)
def version_metrics(request: HttpRequest, slug: str, since: Moment = None, until: Moment = None) -> list[dict]:
    """Attempts created in [since, until), grouped by the config version and canary arm they used, newest
    version first."""
    require_perm(request, *VIEW_PERMS)
    return [
        {**figures.__dict__, "success_rate": figures.success_rate}
        for figures in metrics.by_version(slug, since=since, until=until)
    ]
