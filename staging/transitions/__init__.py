"""Every state change of an `Attempt`, each one a compare-and-set UPDATE.

This package is the one place that writes an attempt's `state` (docs/architecture.md#never-pay-twice):

- each transition is `Attempt.objects.filter(pk=…, state__in=<allowed from>).update(…)`, so when two
  workers, a webhook and the poller race, exactly one wins and the others change nothing;
- states only move forward (`Attempt.RANK`): a terminal attempt never changes again;
- only the caller that wins `claim` may create a prediction, and only while `record_input` still
  finds the attempt claimed; `adopt` is the only way a prediction id gets onto an attempt.

Transitions touch the database and the queue (follow-up work is enqueued on commit), never Replicate:
callers that must cancel a prediction at Replicate do so when a transition tells them to. That keeps
every rule here testable without HTTP.

Every change a caller wins is logged once, by `base.log_change` (docs/operations.md#logs-and-error-tracking).

Split by the side of the create a transition is on: `submitting` (claim, hold, resume, record the input,
requeue or send again a create that made nothing, adopt the prediction) and `completion` (apply news,
reclaim a collection, succeed, cancel, fail and schedule the next attempt). Callers use
`transitions.<name>`, so the names are gathered here.
"""

from .base import states_before
from .completion import STATE_FOR_STATUS, apply_update, backoff_seconds, cancel, fail, reclaim_collect, succeed
from .submitting import (
    Adoption,
    Budget,
    adopt,
    claim,
    record_input,
    refused,
    refused_until_deadline_message,
    requeue,
    resume,
)

__all__ = [
    "STATE_FOR_STATUS",
    "Adoption",
    "Budget",
    "adopt",
    "apply_update",
    "backoff_seconds",
    "cancel",
    "claim",
    "fail",
    "reclaim_collect",
    "record_input",
    "refused",
    "refused_until_deadline_message",
    "requeue",
    "resume",
    "states_before",
    "succeed",
]
