"""Reads that tell staff whether a config change helped: outcomes, times, images and cost per version.

Everything is computed by the database (aggregates, and percentiles as one ordered, offset read per
figure), never by loading attempts into Python, so a page over a month of traffic stays cheap. Times:
`predict` is Replicate's own `metrics.predict_time`; `end to end` runs from the job's creation to the
attempt's outputs being stored (succeeded attempts only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum

from models_config.registry import get_spec

from .models import Attempt, ErrorClass, StagedImage

S = Attempt.State
CENT_HUNDREDTHS = Decimal("0.0001")  # Attempt.cost has four decimal places


@dataclass(frozen=True)
class VersionMetrics:
    """One config version's figures (`version` None: attempts that ran on the code defaults)."""

    version: int | None
    arm: str  # Arm: the same version run as the canary's candidate and as the active one is two rows
    attempts: int
    succeeded: int
    failed_transient: int
    failed_permanent: int
    canceled: int
    in_progress: int
    images: int
    cost: Decimal
    predict_p50: float | None = None
    predict_p95: float | None = None
    end_to_end_p50: float | None = None
    end_to_end_p95: float | None = None
    compared_with: int | None = field(default=None)  # the previous version shown beside it

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed_transient + self.failed_permanent + self.canceled

    @property
    def success_rate(self) -> float | None:
        """Succeeded out of finished attempts; None before any finished."""
        return self.succeeded / self.finished if self.finished else None


def attempts_of(slug: str, since: datetime | None = None, until: datetime | None = None) -> QuerySet[Attempt]:
    get_spec(slug)  # an unknown model is the caller's error (UnknownModelError), not an empty page
    # A playground try ran a draft, not the version it records: it would skew that version's numbers.
    queryset = Attempt.objects.filter(job__model_slug=slug, job__is_try=False)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if until is not None:
        queryset = queryset.filter(created_at__lt=until)
    return queryset


def percentile(values: QuerySet, q: float) -> float | None:
    """The nearest-rank `q` percentile of a one-column queryset, read by the database at one offset."""
    values = values.exclude(value__isnull=True)
    n = values.count()
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    value = values.order_by("value").values_list("value", flat=True)[rank - 1]
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def by_version(slug: str, since: datetime | None = None, until: datetime | None = None) -> list[VersionMetrics]:
    """Figures per config version and arm of `slug`, newest version first (its active arm before its
    candidate arm, side by side), each compared with the version before (docs/architecture.md#canary)."""
    attempts = attempts_of(slug, since, until)
    rows = (
        attempts.values("config_version__number", "arm")
        .annotate(
            attempts=Count("pk"),
            succeeded=Count("pk", filter=Q(state=S.SUCCEEDED)),
            failed_transient=Count("pk", filter=Q(state=S.FAILED, error_class=ErrorClass.TRANSIENT)),
            failed_permanent=Count("pk", filter=Q(state=S.FAILED) & ~Q(error_class=ErrorClass.TRANSIENT)),
            canceled=Count("pk", filter=Q(state=S.CANCELED)),
            cost=Sum("cost"),
        )
        .order_by("-config_version__number", "arm")
    )
    images = {
        (number, arm): n
        for number, arm, n in StagedImage.objects.filter(attempt__in=attempts)
        .values("attempt__config_version__number", "attempt__arm")
        .annotate(n=Count("pk"))
        .values_list("attempt__config_version__number", "attempt__arm", "n")
    }
    result = []
    for row in rows:
        number, arm = row["config_version__number"], row["arm"]
        mine = attempts.filter(config_version__number=number) if number else attempts.filter(config_version=None)
        mine = mine.filter(arm=arm)
        predict = mine.annotate(value=F("predict_time"))
        end_to_end = mine.filter(state=S.SUCCEEDED).annotate(
            value=ExpressionWrapper(F("finished_at") - F("job__created_at"), output_field=DurationField())
        )
        result.append(
            VersionMetrics(
                version=number,
                arm=arm,
                attempts=row["attempts"],
                succeeded=row["succeeded"],
                failed_transient=row["failed_transient"],
                failed_permanent=row["failed_permanent"],
                canceled=row["canceled"],
                in_progress=row["attempts"]
                - row["succeeded"]
                - row["failed_transient"]
                - row["failed_permanent"]
                - row["canceled"],
                images=images.get((number, arm), 0),
                cost=(row["cost"] or Decimal("0")).quantize(CENT_HUNDREDTHS),
                predict_p50=percentile(predict, 0.50),
                predict_p95=percentile(predict, 0.95),
                end_to_end_p50=percentile(end_to_end, 0.50),
                end_to_end_p95=percentile(end_to_end, 0.95),
            )
        )
    numbered = list(dict.fromkeys(m.version for m in result if m.version is not None))  # newest first, once
    previous = dict(pairwise(numbered))
    return [replace(m, compared_with=previous.get(m.version)) for m in result]
