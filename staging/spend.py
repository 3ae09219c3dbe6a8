"""Spend caps, the services (docs/architecture.md#spend-caps): what an attempt is estimated to cost, whether
it fits today's budget, and resuming the attempts a cap held.

The counters themselves and the atomic reservation at the claim are in `ledger` (called by
`transitions`); the reports are in `spend_selectors`. Code about to create attempts (reprocess, the admin's
retry) asks `check_budget` first, so it can refuse or warn instead of filling the held list.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from pydantic import ValidationError

from models_config.registry import get_spec

from . import ledger, selectors, transitions
from .models import Attempt, SpendDay, StagingJob

logger = logging.getLogger(__name__)

S = Attempt.State


def estimate_for(job: StagingJob) -> Decimal:
    """The most the job's next attempt costs with today's config (the registry's `estimate_cost`).

    A config that no longer validates estimates nothing: the submit fails such an attempt before any call.
    """
    try:
        config = selectors.resolve_config(job.model_slug, job.config_override)[1]
    except ValidationError:
        return ledger.ZERO
    return get_spec(job.model_slug).estimate_cost(config)


def check_budget(slug: str, estimated_cost: Decimal, *, now: datetime | None = None) -> str | None:
    """None when `estimated_cost` more for model `slug` fits today's caps; else a one-line reason.

    Advisory (no lock): the claim decides atomically; this lets a caller refuse or warn before creating
    attempts that would only wait as held.
    """
    return ledger.over_budget(slug, estimated_cost, ledger.day_of(now))


def budget_problems(costs: Mapping[str, Decimal], *, now: datetime | None = None) -> list[str]:
    """`check_budget` for a batch: each model's total counted together against the overall cap, one line per
    model that would not fit. Reprocess and the admin's retry ask this before creating any attempt."""
    day = ledger.day_of(now)
    pending: dict[str, Decimal] = defaultdict(Decimal)
    problems = []
    for slug, amount in costs.items():
        reason = ledger.over_budget(slug, amount, day, pending)
        if reason is not None:
            problems.append(reason)
            continue
        _count(pending, slug, amount)
    return problems


def _count(pending: dict[str, Decimal], slug: str, amount: Decimal) -> None:
    pending[slug] += amount
    pending[SpendDay.OVERALL] += amount


def resume_held(*, now: datetime | None = None) -> int:
    """Queue again the held attempts that fit today's budget now, oldest first; returns how many.

    Run by the "resume held attempts" schedule (a new UTC day starts with empty counters) and when a limit
    changes. Attempts let through in one call are counted against the caps together, so raising a cap by one
    slot resumes one attempt, not all of them; the claim checks again atomically anyway.
    """
    day = ledger.day_of(now)
    pending: dict[str, Decimal] = defaultdict(Decimal)
    resumed = 0
    held = Attempt.objects.filter(state=S.HELD).select_related("job").order_by("held_at", "pk")
    for attempt in held[: settings.STAGING_POLL_BATCH]:
        slug, amount = attempt.job.model_slug, attempt.estimated_cost or ledger.ZERO
        if ledger.over_budget(slug, amount, day, pending) is not None:
            continue
        if transitions.resume(attempt.pk):
            _count(pending, slug, amount)
            resumed += 1
    if resumed:
        logger.info("Resumed %d held attempt(s)", resumed)
    return resumed


def on_limit_changed(sender: Any, slug: str = "", **kwargs: Any) -> None:
    """Receiver of `models_config.services.spend_limit_changed`: a raised limit lets held work start now."""
    transaction.on_commit(resume_held)
