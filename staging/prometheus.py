"""`/metrics` in Prometheus text: the pipeline's counters, read from the database at each scrape.

Counting in the database instead of in-process counters keeps the figures right with several web and
queue processes on several hosts (no multiprocess directory to share) and across restarts; a scrape
costs a handful of grouped queries. Access: `Authorization: Bearer $METRICS_TOKEN`, or a staff session.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from django_q.models import OrmQ
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from . import spend_selectors
from .models import Attempt, RefusedCreates

S = Attempt.State


class PipelineCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        created = CounterMetricFamily(
            "staging_predictions_created", "Predictions created at Replicate (paid attempts).", labels=["model"]
        )
        finished = CounterMetricFamily(
            "staging_attempts_finished",
            "Attempts that ended, by outcome and error class.",
            labels=["model", "outcome", "error_class"],
        )
        in_flight = GaugeMetricFamily(
            "staging_attempts_in_flight", "Attempts between claim and stored outputs.", labels=["model"]
        )
        spend = CounterMetricFamily("staging_spend_usd", "USD spent on succeeded attempts.", labels=["model"])
        rows = Attempt.objects.values("job__model_slug").annotate(
            created=Count("pk", filter=Q(prediction_id__isnull=False)),
            in_flight=Count("pk", filter=Q(state__in=Attempt.RUNNING)),
            spend=Sum("cost"),
        )
        for row in rows.order_by("job__model_slug"):
            model = row["job__model_slug"]
            created.add_metric([model], row["created"])
            in_flight.add_metric([model], row["in_flight"])
            spend.add_metric([model], float(row["spend"] or 0))
        outcomes = (
            Attempt.objects.filter(state__in=Attempt.TERMINAL)
            .values("job__model_slug", "state", "error_class")
            .annotate(n=Count("pk"))
            .order_by("job__model_slug", "state", "error_class")
        )
        for row in outcomes:
            finished.add_metric([row["job__model_slug"], row["state"], row["error_class"] or "none"], row["n"])
        queue = GaugeMetricFamily("staging_queue_depth", "Tasks waiting in the django-q2 queue.")
        queue.add_metric([], OrmQ.objects.count())
        yield from (created, finished, in_flight, spend, queue, *self.refusals_and_collects(), *self.budget())

    def refusals_and_collects(self) -> Iterator[Metric]:
        """Creates Replicate refused (unpaid, sent again) by status, and how long collecting outputs took.

        Collect time is from Replicate's success news (`checked_at` when the attempt became collecting) to
        the outputs stored (`finished_at`), summed over succeeded attempts: rate(sum) / rate(count) is the
        mean collect time over any window.
        """
        refused = CounterMetricFamily(
            "staging_creates_refused",
            "Creates Replicate turned away (429, 5xx; status 0: no answer), sent again unpaid.",
            labels=["model", "status"],
        )
        for row in RefusedCreates.objects.order_by("model_slug", "status"):
            refused.add_metric([row.model_slug, str(row.status)], row.count)
        collect = SummaryMetricFamily(
            "staging_collect_seconds", "Time from Replicate's success to stored outputs.", labels=["model"]
        )
        took = ExpressionWrapper(F("finished_at") - F("checked_at"), output_field=DurationField())
        rows = (
            Attempt.objects.filter(state=S.SUCCEEDED, finished_at__isnull=False, checked_at__isnull=False)
            .values("job__model_slug")
            .annotate(n=Count("pk"), total=Sum(took))
            .order_by("job__model_slug")
        )
        for row in rows:
            total = row["total"] or timedelta(0)
            collect.add_metric([row["job__model_slug"]], count_value=row["n"], sum_value=total.total_seconds())
        yield from (refused, collect)

    def budget(self) -> Iterator[Metric]:
        """Held attempts and today's (UTC) counters per model; `model=""` is all models together."""
        held = GaugeMetricFamily("staging_attempts_held", "Attempts waiting for spend budget.", labels=["model"])
        spent = GaugeMetricFamily("staging_spend_today_usd", "USD spent today (UTC day).", labels=["model"])
        reserved = GaugeMetricFamily(
            "staging_spend_reserved_today_usd", "USD reserved today by attempts not yet ended.", labels=["model"]
        )
        for scope in spend_selectors.today():
            held.add_metric([scope.model], scope.held)
            spent.add_metric([scope.model], float(scope.spent))
            reserved.add_metric([scope.model], float(scope.reserved))
        yield from (held, spent, reserved)


def allowed(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if settings.METRICS_TOKEN and scheme.lower() == "bearer":
        return hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_staff)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse(
            "Send Authorization: Bearer <METRICS_TOKEN>, or log in as staff.\n", status=401, content_type="text/plain"
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
