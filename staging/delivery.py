"""Choosing which output of a job is delivered (docs/architecture.md#choosing-the-output).

After a reprocess a job has outputs from several attempts; staff compare them on the job page and
mark one. The choice is one pointer on the job (`StagingJob.chosen_output`), so there can never be
two chosen outputs, and a later attempt does not move it. Without a choice the latest succeeded
attempt's output is delivered (`selectors.deliverable`).
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from . import selectors
from .models import StagedImage, StagingJob

CHOOSE_PERMISSION = "staging.change_stagingjob"


def choose_output(job_id: int, index: int, attempt_number: int | None, *, user: AbstractBaseUser) -> StagedImage:
    """Mark output `index` of attempt `attempt_number` (None: the delivered attempt) as the one to deliver.

    Raises `PermissionDenied` unless `user` may change jobs, `OutputNotFound` for an unknown job/output.
    Choosing costs nothing and is idempotent: the same choice twice changes only `chosen_at`.
    """
    if not user.has_perm(CHOOSE_PERMISSION):
        raise PermissionDenied("Choosing the delivered output needs the permission to change jobs.")
    image = selectors.output_of(job_id, index, attempt_number)
    now = timezone.now()
    StagingJob.objects.filter(pk=job_id).update(chosen_output=image, chosen_at=now, chosen_by=user, updated_at=now)
    return image
