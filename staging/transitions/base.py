"""What every transition shares: the forward-only order of states and the one log line of a change won.

Only the modules of this package use them (docs/architecture.md#forward-only-states).
"""

from __future__ import annotations

import logging
from typing import Any

from ..models import Attempt

# One logger for the package, "staging.transitions", whichever module logs (docs/operations.md#logs-and-error-tracking).
logger = logging.getLogger(__package__)


def states_before(state: str) -> list[str]:
    """States an attempt may move to `state` from (strictly lower rank)."""
    return [s for s, rank in Attempt.RANK.items() if rank < Attempt.RANK[state]]


def log_change(attempt_id: int, state: str, **fields: Any) -> None:
    """One line for a change this caller won, naming the job, attempt, prediction and config version.

    The identifiers are read back (one query, only while INFO is logged) because a compare-and-set
    UPDATE returns none of them; never the token or the input, which work as credentials. With
    `LOG_FORMAT=json` each name below is a key of its own.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    row = (
        Attempt.objects.filter(pk=attempt_id)
        .values("job_id", "number", "prediction_id", "config_version__number")
        .first()
    )
    if row is None:
        return
    context = {
        "job_id": row["job_id"],
        "attempt": row["number"],
        "attempt_id": attempt_id,
        "state": state,
        "prediction_id": row["prediction_id"],
        "config_version": row["config_version__number"],
        **fields,
    }
    details = "".join(f", {key} {value}" for key, value in fields.items())
    logger.info(
        "Job %s attempt %s -> %s (prediction %s, config version %s%s)",
        context["job_id"],
        context["attempt"],
        state,
        context["prediction_id"],
        context["config_version"],
        details,
        extra=context,
    )
