"""Putting pipeline work on the django-q2 queue: the one `enqueue`, used by every caller.

Work is queued when the current transaction commits (at once in autocommit), so a task never runs
before the rows it reads exist, and a rolled-back change queues nothing. The queue delivers at least
once (docs/architecture.md#idempotent-tasks), so every task it runs is idempotent.
"""

from __future__ import annotations

from django.db import transaction
from django_q.tasks import async_task


def enqueue(task: str, *args: int) -> None:
    """Queue `staging.tasks.<task>(*args)` once the current transaction commits."""
    name = f"{task}-{'-'.join(map(str, args))}"
    transaction.on_commit(lambda: async_task(f"staging.tasks.{task}", *args, task_name=name))
