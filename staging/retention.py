"""Retention: what the service forgets, and when. One function the `purge` command and the daily
schedule both call (like `SessionStore.clear_expired` behind `clearsessions`).

- Staged outputs and their derivatives older than `STAGING_RETENTION_DAYS` (unset: kept forever).
  Originals stay while their job exists: they are the unaltered photo a disclosure points to.
- Webhook deliveries older than `STAGING_WEBHOOK_RETENTION_DAYS`: they only deduplicate redeliveries,
  which Replicate stops long before (docs/replicate.md#delivery).
- The queue's task results older than `STAGING_TASK_RESULT_RETENTION_DAYS`.

Work goes in batches of `STAGING_PURGE_BATCH`, so a first purge of a large backlog never holds a long
transaction; a dry run counts and deletes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Task

from . import derivatives
from .models import StagedImage, WebhookDelivery


@dataclass(frozen=True)
class PurgeReport:
    outputs: int  # StagedImage rows, each with its file and its derivatives' files
    webhook_deliveries: int
    task_results: int
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "Would delete" if self.dry_run else "Deleted"
        return (
            f"{verb} {self.outputs} staged output(s) with their derivatives, "
            f"{self.webhook_deliveries} webhook deliveries and {self.task_results} queue task result(s)."
        )


def cutoff(days: float | None, now: datetime) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def purge(*, now: datetime | None = None, dry_run: bool = False) -> PurgeReport:
    now = now or timezone.now()
    batch = settings.STAGING_PURGE_BATCH
    outputs_before = cutoff(settings.STAGING_RETENTION_DAYS, now)
    webhooks_before = cutoff(settings.STAGING_WEBHOOK_RETENTION_DAYS, now)
    tasks_before = cutoff(settings.STAGING_TASK_RESULT_RETENTION_DAYS, now)

    outputs = (
        StagedImage.objects.none()
        if outputs_before is None
        else StagedImage.objects.filter(created_at__lt=outputs_before)
    )
    deliveries = WebhookDelivery.objects.filter(received_at__lt=webhooks_before) if webhooks_before else None
    results = Task.objects.filter(stopped__lt=tasks_before) if tasks_before else None
    if dry_run:
        return PurgeReport(
            outputs=outputs.count(),
            webhook_deliveries=deliveries.count() if deliveries is not None else 0,
            task_results=results.count() if results is not None else 0,
            dry_run=True,
        )

    removed_outputs = 0
    while chunk := list(outputs.order_by("pk").prefetch_related("derivatives")[:batch]):
        for image in chunk:
            derivatives.delete_staged_image(image)
        removed_outputs += len(chunk)
    return PurgeReport(
        outputs=removed_outputs,
        webhook_deliveries=_delete_in_batches(deliveries, batch),
        task_results=_delete_in_batches(results, batch),
    )


def _delete_in_batches(queryset, batch: int) -> int:
    if queryset is None:
        return 0
    total = 0
    while ids := list(queryset.order_by("pk").values_list("pk", flat=True)[:batch]):
        queryset.model.objects.filter(pk__in=ids).delete()
        total += len(ids)
    return total
