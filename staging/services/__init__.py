"""The writes of the staging pipeline, split by what they act on (docs/architecture.md#staging):

- `jobs`: create, retry, reprocess on another model and cancel a job; `OverridePolicy`;
- `attempts`: submit an attempt and take in news about its prediction.

Callers use `services.<name>` whichever module holds it, so the names are gathered here.
"""

from .attempts import adopt_prediction, apply_prediction_update, refusal_wait, submit_attempt
from .jobs import (
    OPERATOR,
    PER_JOB_ONLY,
    OverridePolicy,
    cancel_job,
    create_job,
    reprocess_on_model,
    retry_job,
    unsaved_copy,
)

__all__ = [
    "OPERATOR",
    "PER_JOB_ONLY",
    "OverridePolicy",
    "adopt_prediction",
    "apply_prediction_update",
    "cancel_job",
    "create_job",
    "refusal_wait",
    "reprocess_on_model",
    "retry_job",
    "submit_attempt",
    "unsaved_copy",
]
