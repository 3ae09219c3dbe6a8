"""Reads about spend: the report per UTC day, model and config version, today's counters, the limits.

Computed by database aggregates (grouped counts and sums), never by loading attempts into Python. An
attempt counts on the UTC day it was sent (its claim), the day its cost counted against the caps
(docs/architecture.md#spend-caps).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from models_config.models import ModelConfig
from models_config.registry import REGISTRY

from . import ledger
from .metrics import CENT_HUNDREDTHS
from .models import Attempt, SpendDay, StagedImage

S = Attempt.State
DEFAULT_DAYS = 30


@dataclass(frozen=True)
class SpendRow:
    day: date
    model: str
    version: int | None  # None: the code defaults
    attempts: int
    succeeded: int
    images: int
    cost: Decimal


@dataclass(frozen=True)
class ScopeToday:
    """Today's counters of one model, or of all models (`model` = "")."""

    model: str
    limit: Decimal | None
    reserved: Decimal
    spent: Decimal
    held: int


@dataclass(frozen=True)
class ModelLimit:
    model: str
    title: str
    limit: Decimal | None


def default_range(since: date | None, until: date | None) -> tuple[date, date]:
    """[since, until], both UTC days and inclusive; by default the last `DEFAULT_DAYS` days up to today."""
    until = until or ledger.day_of()
    return since or until - timedelta(days=DEFAULT_DAYS - 1), until


def by_day(since: date, until: date) -> list[SpendRow]:
    """Per UTC day, model and config version, oldest day first: attempts sent, succeeded, images, actual cost."""
    day = TruncDate("submitting_at", tzinfo=UTC)
    sent = Attempt.objects.filter(submitting_at__isnull=False).annotate(day=day).filter(day__gte=since, day__lte=until)
    keys = ("day", "job__model_slug", "config_version__number")
    rows = (
        sent.values(*keys)
        .annotate(attempts=Count("pk"), succeeded=Count("pk", filter=Q(state=S.SUCCEEDED)), cost=Sum("cost"))
        .order_by(*keys)
    )
    images: dict[tuple, int] = defaultdict(int)
    image_rows = (
        StagedImage.objects.filter(attempt__in=sent.values("pk"))
        .annotate(day=TruncDate("attempt__submitting_at", tzinfo=UTC))
        .values("day", "attempt__job__model_slug", "attempt__config_version__number")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in image_rows:
        images[(row["day"], row["attempt__job__model_slug"], row["attempt__config_version__number"])] = row["n"]
    return [
        SpendRow(
            day=row["day"],
            model=row["job__model_slug"],
            version=row["config_version__number"],
            attempts=row["attempts"],
            succeeded=row["succeeded"],
            images=images[(row["day"], row["job__model_slug"], row["config_version__number"])],
            cost=(row["cost"] or ledger.ZERO).quantize(CENT_HUNDREDTHS),
        )
        for row in rows
    ]


def today() -> list[ScopeToday]:
    """Today's reserved and spent amounts, cap and held attempts: every model with any of them, then all models."""
    day = ledger.day_of()
    counters = {row.model_slug: row for row in SpendDay.objects.filter(day=day)}
    held = dict(
        Attempt.objects.filter(state=S.HELD)
        .values("job__model_slug")
        .annotate(n=Count("pk"))
        .values_list("job__model_slug", "n")
    )
    limits = {row.model: row.limit for row in limits_by_model()}
    models = sorted({*held, *(slug for slug in counters if slug), *(slug for slug, cap in limits.items() if cap)})
    out = []
    for slug in [*models, SpendDay.OVERALL]:
        row = counters.get(slug)
        out.append(
            ScopeToday(
                model=slug,
                limit=limits.get(slug) if slug else ledger.overall_limit(),
                reserved=row.reserved if row else ledger.ZERO,
                spent=row.spent if row else ledger.ZERO,
                held=held.get(slug, 0) if slug else sum(held.values()),
            )
        )
    return out


def limits_by_model() -> list[ModelLimit]:
    """Every registered model with its own daily cap (None: none)."""
    stored = dict(ModelConfig.objects.values_list("slug", "daily_spend_limit"))
    return [ModelLimit(slug, spec.title, stored.get(slug)) for slug, spec in REGISTRY.items()]
