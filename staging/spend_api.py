"""`GET /api/v1/admin/spend` (the report) and `GET|PUT /api/v1/admin/spend/limits` (docs/architecture.md#spend-caps).

Reading needs staff with view permission on jobs; setting a limit needs the permission to change a model's
config. A limit change goes through `models_config.services.set_daily_spend_limit` (audited, and held
attempts resume at once when it frees budget); errors are answered by `api.errors`.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from api.auth import require_perm
from api.errors import field_error, invalid
from api.schemas import WITH_BODY, error_responses
from models_config.models import CHANGE_CONFIG_PERMISSION
from models_config.services import set_daily_spend_limit

from . import ledger, spend_selectors
from .selectors import VIEW_ALL_PERMS

router = Router(tags=["spend"])


class SpendRowOut(Schema):
    day: date = Field(description="UTC day the attempts were sent.")
    model: str
    version: int | None = Field(description="Config version; null for the code defaults.")
    attempts: int
    succeeded: int
    images: int
    cost: Decimal = Field(description="USD actually spent.")


class TodayOut(Schema):
    model: str = Field(description='A model slug; "" for all models together.')
    limit: Decimal | None = Field(description="USD per UTC day; null: no cap.")
    reserved: Decimal = Field(description="Estimated USD of attempts sent and not yet ended.")
    spent: Decimal
    held: int = Field(description="Attempts waiting for budget.")


class SpendOut(Schema):
    since: date
    until: date
    rows: list[SpendRowOut]
    today: list[TodayOut]


class ModelLimitOut(Schema):
    model: str
    title: str
    limit: Decimal | None


class LimitsOut(Schema):
    day: date = Field(description="Today, in UTC: the spend day every cap counts.")
    overall: Decimal | None = Field(description="STAGING_DAILY_SPEND_LIMIT (a setting); null: no cap.")
    models: list[ModelLimitOut]


class LimitIn(Schema):
    model: str = Field(description="A registered model slug.")
    limit: Decimal | None = Field(description="USD per UTC day, 0 or more; null removes the model's own cap.")
    comment: str = Field(default="", description="Why (kept in the model's history).")


@router.get("", response={200: SpendOut, **error_responses(422)}, summary="Spend per UTC day, model and version")
def spend_report(request: HttpRequest, since: date | None = None, until: date | None = None) -> dict[str, Any]:
    """Days from `since` to `until`, both included (default: the last 30 days), plus today's counters."""
    require_perm(request, *VIEW_ALL_PERMS)
    since, until = spend_selectors.default_range(since, until)
    if since > until:
        raise invalid(field_error(["query", "since"], "since must not be after until."))
    return {
        "since": since,
        "until": until,
        "rows": [row.__dict__ for row in spend_selectors.by_day(since, until)],
        "today": [scope.__dict__ for scope in spend_selectors.today()],
    }


@router.get("/limits", response={200: LimitsOut, **error_responses()}, summary="The daily spend limits")
def get_limits(request: HttpRequest) -> dict[str, Any]:
    require_perm(request, *VIEW_ALL_PERMS, CHANGE_CONFIG_PERMISSION)
    return _limits()


@router.put(
    "/limits", response={200: LimitsOut, **error_responses(*WITH_BODY, 404)}, summary="Set a model's daily limit"
)
def put_limit(request: HttpRequest, payload: LimitIn) -> dict[str, Any]:
    """Audited as a `spend_limit` event of the model; attempts held by a cap start at once when it fits."""
    user = require_perm(request, CHANGE_CONFIG_PERMISSION)
    set_daily_spend_limit(payload.model, payload.limit, actor=user, comment=payload.comment)
    return _limits()


def _limits() -> dict[str, Any]:
    return {
        "day": ledger.day_of(),
        "overall": ledger.overall_limit(),
        "models": [row.__dict__ for row in spend_selectors.limits_by_model()],
    }
