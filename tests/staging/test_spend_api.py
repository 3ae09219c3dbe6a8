"""The spend report and limits (API and admin page), the held and budget gauges, and the two schedules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models_config.models import ConfigEvent, ModelConfig, ModelConfigVersion
from staging import gateway, ledger, schedules, tasks
from staging.models import Attempt, SpendDay, StagedImage, StagingJob
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.django_db

SPEND = "/api/v1/admin/spend"
LIMITS = f"{SPEND}/limits"
FLUX = "flux-kontext-pro"


def _attempt(slug: str, sent: datetime | None, *, state: str = "succeeded", cost: str | None = None, version=None):
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug=slug)
    return Attempt.objects.create(
        job=job,
        number=1,
        state=state,
        submitting_at=sent,
        cost=Decimal(cost) if cost else None,
        config_version=version,
    )


def _images(attempt: Attempt, n: int) -> None:
    for index in range(n):
        StagedImage.objects.create(
            attempt=attempt,
            index=index,
            source_url="https://replicate.delivery/x.png",
            file=f"staging/outputs/x/{attempt.pk}-{index}.png",
            content_type="image/png",
            size=1,
            checksum="0" * 64,
            width=1,
            height=1,
        )


def _put(client, body: dict, **headers):
    return client.put(LIMITS, json.dumps(body), content_type="application/json", headers=headers)


@pytest.fixture
def reader():
    return logged_in(make_staff("reader", "staging.view_stagingjob"))


@pytest.fixture
def limiter():
    return make_staff("limiter", "staging.view_stagingjob", "models_config.change_modelconfig")


# --- the report -----------------------------------------------------------------------------------


def test_report_aggregates_per_utc_day_model_and_version(reader):
    v1 = ModelConfigVersion.objects.filter(model_config__slug=FLUX, number=1).first()
    day1 = datetime(2026, 5, 4, 23, 50, tzinfo=UTC)
    day2 = day1 + timedelta(minutes=20)  # after midnight UTC: the next day
    a = _attempt(FLUX, day1, cost="0.04", version=v1)
    _images(a, 1)
    b = _attempt(FLUX, day1, cost="0.04", version=v1)
    _images(b, 1)
    _attempt(FLUX, day1, state="failed", version=v1)
    c = _attempt("seedream-4", day2, cost="0.09")
    _images(c, 3)
    _attempt(FLUX, day2 + timedelta(days=5), cost="0.04")  # outside the range
    _attempt(FLUX, None, state="queued")  # never sent: not counted
    response = reader.get(SPEND, {"since": "2026-05-04", "until": "2026-05-05"})
    assert response.status_code == 200, response.content
    body = response.json()
    keys = ("day", "model", "version", "attempts", "succeeded", "images", "cost")
    rows = [tuple(row[key] for key in keys) for row in body["rows"]]
    assert rows == [
        ("2026-05-04", FLUX, v1.number if v1 else None, 3, 2, 2, "0.0800"),
        ("2026-05-05", "seedream-4", None, 1, 1, 3, "0.0900"),
    ]
    assert body["since"] == "2026-05-04" and body["until"] == "2026-05-05"


def test_report_shows_todays_counters_and_held_attempts(reader, settings):
    settings.STAGING_DAILY_SPEND_LIMIT = Decimal("5")
    ModelConfig.objects.update_or_create(slug=FLUX, defaults={"daily_spend_limit": Decimal("1.00")})
    SpendDay.objects.create(day=ledger.day_of(), model_slug=FLUX, reserved=Decimal("0.04"), spent=Decimal("0.96"))
    SpendDay.objects.create(day=ledger.day_of(), model_slug="", reserved=Decimal("0.04"), spent=Decimal("0.96"))
    _attempt(FLUX, None, state="held")
    _attempt(FLUX, None, state="held")
    today = {row["model"]: row for row in reader.get(SPEND).json()["today"]}
    assert today[FLUX] == {"model": FLUX, "limit": "1.00", "reserved": "0.0400", "spent": "0.9600", "held": 2}
    assert today[""]["limit"] == "5" and today[""]["held"] == 2


def test_report_refuses_bad_ranges_and_other_staff(reader):
    assert reader.get(SPEND, {"since": "yesterday"}).status_code == 422
    bad = reader.get(SPEND, {"since": "2026-05-06", "until": "2026-05-05"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]
    assert logged_in(make_staff("bare")).get(SPEND).status_code == 403


# --- the limits -------------------------------------------------------------------------------------


def test_setting_a_limit_is_audited(limiter):
    client = logged_in(limiter)
    response = _put(client, {"model": FLUX, "limit": "2.50", "comment": "launch week"})
    assert response.status_code == 200, response.content
    limits = {row["model"]: row["limit"] for row in response.json()["models"]}
    assert limits[FLUX] == "2.50" and limits["seedream-4"] is None
    assert ModelConfig.objects.get(slug=FLUX).daily_spend_limit == Decimal("2.50")
    assert _put(client, {"model": FLUX, "limit": None}).status_code == 200
    first, second = ConfigEvent.objects.filter(model_config__slug=FLUX, kind="spend_limit").order_by("pk")
    assert (first.data, first.actor, first.comment) == ({"old": None, "new": "2.50"}, limiter, "launch week")
    assert second.data == {"old": "2.50", "new": None}
    assert client.get(LIMITS).json()["day"] == ledger.day_of().isoformat()


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        ({"model": FLUX, "limit": "-1"}, 422, ["body", "limit"]),
        ({"model": FLUX, "limit": "lots"}, 422, ["body", "payload", "limit"]),
        ({"model": FLUX, "limit": "0.001"}, 422, ["body", "limit"]),
        ({"model": FLUX, "limit": 1.7976931348623157e308}, 422, ["body", "limit"]),
        ({"model": "no-such-model", "limit": "1"}, 404, None),
    ],
)
def test_bad_limits_are_refused_and_nothing_changes(limiter, body, status, loc):
    response = _put(logged_in(limiter), body)
    assert response.status_code == status, response.content
    if loc:
        assert response.json()["detail"][0]["loc"] == loc
    else:
        assert "Unknown model 'no-such-model'" in response.json()["detail"]
    assert not ConfigEvent.objects.filter(kind="spend_limit").exists()
    assert ModelConfig.objects.get(slug=FLUX).daily_spend_limit is None


def test_only_config_editors_set_limits(reader):
    assert _put(reader, {"model": FLUX, "limit": "1"}).status_code == 403
    assert reader.get(LIMITS).status_code == 200


# --- the admin page ---------------------------------------------------------------------------------


def test_admin_spend_page_draws_bars_and_sets_limits(limiter):
    _images(_attempt(FLUX, datetime.now(UTC), cost="0.04"), 1)
    _attempt("seedream-4", datetime.now(UTC), cost="0.02")
    client = logged_in(limiter)
    index = client.get("/admin/").content.decode()
    assert "/admin/staging/spendday/" in index  # linked from the Staging app list
    page = client.get("/admin/staging/spendday/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="spend-chart"' in html and "width: 100.0%" in html and "width: 50.0%" in html
    assert 'id="spend-limit-form"' in html
    response = client.post("/admin/staging/spendday/", {"model": FLUX, "limit": "3", "comment": "via admin"})
    assert response.status_code == 302
    assert ModelConfig.objects.get(slug=FLUX).daily_spend_limit == Decimal("3")
    assert ConfigEvent.objects.get(kind="spend_limit").actor == limiter
    refused = client.post("/admin/staging/spendday/", {"model": FLUX, "limit": "-2"})
    assert refused.status_code == 200 and "errorlist" in refused.content.decode()
    assert ModelConfig.objects.get(slug=FLUX).daily_spend_limit == Decimal("3")


def test_admin_spend_page_for_readers_has_no_form(reader):
    page = reader.get("/admin/staging/spendday/")
    assert page.status_code == 200 and 'id="spend-limit-form"' not in page.content.decode()
    assert reader.post("/admin/staging/spendday/", {"model": FLUX, "limit": "3"}).status_code == 403
    assert logged_in(make_staff("nobody")).get("/admin/staging/spendday/").status_code == 403


def test_metrics_show_held_attempts_and_todays_counters():
    from tests.staging.test_prometheus import samples

    SpendDay.objects.create(day=ledger.day_of(), model_slug=FLUX, reserved=Decimal("0.04"), spent=Decimal("0.08"))
    _attempt(FLUX, None, state="held")
    got = samples(logged_in(make_staff("ops")).get("/metrics").content.decode())
    flux = (("model", FLUX),)
    assert got[("staging_attempts_held", flux)] == 1
    assert got[("staging_spend_today_usd", flux)] == pytest.approx(0.08)
    assert got[("staging_spend_reserved_today_usd", flux)] == pytest.approx(0.04)


# --- schedules ----------------------------------------------------------------------------------------


def test_both_schedules_are_declared_and_created_on_migrate():
    from django_q.models import Schedule

    schedules.ensure_schedules()
    funcs = dict(Schedule.objects.values_list("name", "func"))
    assert funcs["staging: resume held attempts"] == "staging.tasks.resume_held"
    assert funcs["staging: refresh the webhook secret"] == "staging.tasks.refresh_webhook_secret"


def test_secret_refresh_stores_the_new_secret_from_the_emulator(pipeline, settings):
    from replicate_emulator.webhooks import new_secret

    settings.REPLICATE_WEBHOOK_SECRET = ""
    key = (settings.REPLICATE_BASE_URL, settings.REPLICATE_API_TOKEN)
    assert tasks.refresh_webhook_secret() == "Webhook secret fetched."
    assert gateway.secret_cache[key][0] == pipeline.webhook_secret
    pipeline.webhook_secret = new_secret()  # rotated at Replicate
    assert tasks.refresh_webhook_secret() == "Webhook secret fetched (it changed)."
    assert gateway.secret_cache[key][0] == pipeline.webhook_secret
    assert gateway.webhook_secret() == pipeline.webhook_secret
