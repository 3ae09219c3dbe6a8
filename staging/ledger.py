"""The spend counters (`SpendDay`): reserve an attempt's estimate at its claim, settle it when it ends.

Kept apart from `spend` (the services) because `transitions` calls it inside its compare-and-set
transactions: a claim and its reservation, an ending and its settlement, commit together or not at all
(docs/architecture.md#spend-caps). Imports nothing of the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.utils import timezone

from models_config.models import ModelConfig

from .models import Attempt, SpendDay

ZERO = Decimal(0)


def day_of(moment: datetime | None = None) -> date:
    """The spend day of `moment`: its UTC calendar date, whatever the server's time zone."""
    return (moment or timezone.now()).astimezone(UTC).date()


def overall_limit() -> Decimal | None:
    return settings.STAGING_DAILY_SPEND_LIMIT


def model_limit(slug: str) -> Decimal | None:
    """The model's own cap, read from the database at each claim so a change applies at once."""
    return ModelConfig.objects.filter(slug=slug).values_list("daily_spend_limit", flat=True).first()


@dataclass(frozen=True)
class Scope:
    """One counter row and its cap: a model's, or the overall one (`slug` = "")."""

    slug: str
    limit: Decimal | None

    @property
    def label(self) -> str:
        return f"the daily spend limit of {self.slug}" if self.slug else "the overall daily spend limit"


def scopes_of(slug: str) -> list[Scope]:
    """The model's row first, then the overall row: every claim locks them in this order (no deadlock)."""
    return [Scope(slug, model_limit(slug)), Scope(SpendDay.OVERALL, overall_limit())]


def _add(day: date, scope: Scope, amount: Decimal) -> bool:
    """Add `amount` to the scope's reserved total if it stays within the cap; the row is made on first use.

    The conditional UPDATE comes first, so a day's row costs one query once it exists.
    """
    rows = SpendDay.objects.filter(day=day, model_slug=scope.slug)
    if scope.limit is not None:
        rows = rows.filter(reserved__lte=Value(scope.limit - amount) - F("spent"))
    if rows.update(reserved=F("reserved") + amount):
        return True
    if SpendDay.objects.filter(day=day, model_slug=scope.slug).exists():
        return False  # over the cap
    try:
        with transaction.atomic():
            SpendDay.objects.create(day=day, model_slug=scope.slug)
    except IntegrityError:
        pass  # another claim made it meanwhile
    return bool(rows.update(reserved=F("reserved") + amount))


def committed(day: date, slug: str) -> Decimal:
    """Reserved plus spent on `day` for one scope (read only)."""
    row = SpendDay.objects.filter(day=day, model_slug=slug).values("reserved", "spent").first()
    return (row["reserved"] + row["spent"]) if row else ZERO


def refusal(scope: Scope, day: date, amount: Decimal) -> str:
    used = committed(day, scope.slug)
    return (
        f"Held: {scope.label} (${scope.limit} per UTC day) is reached: ${used} spent or reserved on {day}, "
        f"this attempt needs ${amount}. It starts by itself when the limit is raised or the day ends."
    )


def over_budget(slug: str, amount: Decimal, day: date, pending: Mapping[str, Decimal] | None = None) -> str | None:
    """Why `amount` more for `slug` on `day` would pass a cap, or None when it fits (read only, no lock).

    `pending` adds amounts not yet reserved, per scope slug ("" for all models): what a caller is about to
    let through in the same batch.
    """
    for scope in scopes_of(slug):
        extra = (pending or {}).get(scope.slug, ZERO)
        if scope.limit is not None and committed(day, scope.slug) + extra + amount > scope.limit:
            return refusal(scope, day, amount)
    return None


class _Refused(Exception):
    def __init__(self, scope: Scope) -> None:
        self.scope = scope


def reserve(attempt_id: int, slug: str, amount: Decimal, day: date) -> str | None:
    """Add `amount` to the day's counters of `slug` and of all models, only if both stay within their caps.

    Each counter moves by one conditional UPDATE (`reserved + amount <= limit - spent` in its WHERE):
    on PostgreSQL a second worker waits for the first's row lock and then re-checks the condition against
    the committed total, so with one slot left exactly one passes. Returns None when reserved (recorded on
    the attempt for `settle`), else the reason it was refused, with nothing changed. Call it inside the
    claim's transaction.
    """
    try:
        with transaction.atomic():  # a savepoint: a refusal by the second counter undoes the first
            for scope in scopes_of(slug):
                if not _add(day, scope, amount):
                    raise _Refused(scope)
            Attempt.objects.filter(pk=attempt_id).update(reserved_on=day, estimated_cost=amount)
    except _Refused as refused:
        return refusal(refused.scope, day, amount)
    return None


def settle(attempt_id: int, cost: Decimal | None) -> None:
    """Replace the attempt's reservation by what it cost (`cost`; None: nothing, e.g. no prediction ran).

    Idempotent: the first call clears `reserved_on`, later ones find nothing to settle. Call it inside the
    transaction of the transition that ends (or requeues) the attempt.
    """
    reserved = Attempt.objects.filter(pk=attempt_id, reserved_on__isnull=False)
    found = reserved.values("reserved_on", "estimated_cost", "job__model_slug").first()
    if found is None or not Attempt.objects.filter(pk=attempt_id, reserved_on=found["reserved_on"]).update(
        reserved_on=None
    ):
        return
    estimate, spent = found["estimated_cost"] or ZERO, cost or ZERO
    for scope_slug in (found["job__model_slug"], SpendDay.OVERALL):
        SpendDay.objects.filter(day=found["reserved_on"], model_slug=scope_slug).update(
            reserved=F("reserved") - estimate, spent=F("spent") + spent
        )
