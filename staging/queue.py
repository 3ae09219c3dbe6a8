"""Putting pipeline work on the django-q2 queue: the one `enqueue`, used by every caller, and `enqueue_at`.

Work is queued when the current transaction commits (at once in autocommit), so a task never runs
before the rows it reads exist, and a rolled-back change queues nothing. The queue delivers at least
once (docs/architecture.md#idempotent-tasks), so every task it runs is idempotent.

Pipeline tasks are queued with `save=False`: django-q2 keeps no result row for one that succeeded (a
failed one is still saved, and shown in the admin). Their outcome is the attempt's state; and with
`save_limit` set, saving each result first read every saved success row under `SELECT … FOR UPDATE` to
prune the oldest, about 10 ms of the cluster's CPU per task (docs/operations.md#queue-settings).
Scheduled tasks are saved as before (`/readyz` looks for them).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.tasks import async_task


def enqueue(task: str, *args: int) -> None:
    """Queue `staging.tasks.<task>(*args)` once the current transaction commits."""
    name = f"{task}-{'-'.join(map(str, args))}"
    transaction.on_commit(lambda: async_task(f"staging.tasks.{task}", *args, task_name=name, save=False))


class NotBefore(ORM):
    """The ORM broker, writing a task that no cluster may pull before `at`.

    The ORM broker hands out a queued row once its `lock` time has passed ("prevent any cluster from
    pulling until", the field's own help text; that is how it hands a dead worker's task out again), so a
    row written with `lock = at` is a delayed task (docs/architecture.md#wake-ups-on-time).
    """

    def __init__(self, at: datetime) -> None:
        super().__init__()
        self.at = at

    def enqueue(self, task: str) -> int:
        return self.get_connection().create(key=self.list_key, payload=task, lock=self.at).pk


def enqueue_at(task: str, *args: int, at: datetime) -> None:
    """Queue `staging.tasks.<task>(*args)` to start at `at` (a due retry, the next poll), after the commit.

    No worker waits for it and no schedule tick is needed: a cluster pulls it within its `poll` interval
    of `at`, and the row survives a restart. In sync mode (tests, `stage --wait`) nothing is queued: a
    delayed task cannot run inline, and the in-process runner starts the work itself once it is due.
    Without the ORM broker the minute's `retry_due` tick starts it.
    """
    if Conf.SYNC:
        return
    name = f"{task}-{'-'.join(map(str, args))}"

    def push() -> None:
        if isinstance(get_broker(), ORM):
            async_task(f"staging.tasks.{task}", *args, task_name=name, save=False, broker=NotBefore(at))

    transaction.on_commit(push)
