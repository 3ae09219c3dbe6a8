"""One log line per attempt state change won, with the job, attempt, prediction and config version; JSON on request."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from staging import transitions
from staging.errors import PERMANENT
from staging.models import Attempt
from tests.fixtures.pipeline import attempts, drive

from .conftest import MANAGE

pytestmark = pytest.mark.django_db(transaction=True)
LOGGER = "staging.transitions"


def changes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER and hasattr(record, "state")]


def test_a_job_logs_each_change_once_with_its_identifiers(make_job, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    job = make_job("seedream-4")
    assert drive(job) == "succeeded"
    (attempt,) = attempts(job)

    records = changes(caplog)
    states = [record.state for record in records]
    assert states[:2] == ["submitting", "submitted"] and states[-2:] == ["collecting", "succeeded"]
    assert len(states) == len(set(states))  # polls that repeat a state log nothing
    for record in records:
        assert (record.job_id, record.attempt, record.attempt_id) == (job.pk, 1, attempt.pk)
        assert record.getMessage().startswith(f"Job {job.pk} attempt 1 -> {record.state} (prediction ")
    claimed, *after_adopt = records
    assert claimed.prediction_id is None  # claimed: no prediction yet, no input recorded yet
    for record in after_adopt:
        assert record.prediction_id == attempt.prediction_id and record.config_version == 1
        assert f"prediction {attempt.prediction_id}, config version 1)" in record.getMessage()
    for record in caplog.records:  # no line of the whole run carries the attempt's webhook credential
        assert attempt.token not in record.getMessage() and attempt.token not in str(record.__dict__)


def test_a_lost_compare_and_set_logs_nothing(make_job, caplog) -> None:
    job = make_job("seedream-4")
    assert drive(job) == "succeeded"
    attempt = attempts(job)[0]
    caplog.set_level(logging.INFO, logger=LOGGER)
    caplog.clear()
    assert not transitions.claim(attempt.pk)
    assert not transitions.cancel(attempt.pk, "too late")
    assert not transitions.fail(attempt.pk, "too late", PERMANENT)
    assert changes(caplog) == []


def test_a_failure_names_its_class_and_never_a_signature(pipeline, make_job, caplog) -> None:
    job = make_job("seedream-4")
    attempt = attempts(job)[0]
    Attempt.objects.filter(pk=attempt.pk).update(state=Attempt.State.PROCESSING, prediction_id="p-123")
    caplog.set_level(logging.INFO, logger=LOGGER)
    caplog.clear()
    message = "Could not fetch 'https://staging.example/files/original.jpg?sig=eyJuYW1lIn0:1xW:s3cr3t-signature'"
    assert transitions.fail(attempt.pk, message, PERMANENT)
    (record,) = changes(caplog)
    assert (record.state, record.error_class, record.prediction_id) == ("failed", PERMANENT, "p-123")
    assert "s3cr3t-signature" not in record.getMessage() and "s3cr3t-signature" not in record.error
    assert "?sig=[redacted]" in record.error and "error_class permanent" in record.getMessage()


def test_log_format_json_writes_one_object_per_line_with_the_fields_as_keys(subprocess_env, photo_path: Path) -> None:
    """The real logging config of a `stage --emulator --wait` run, read back line by line."""
    env = {**subprocess_env, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    result = subprocess.run(
        [sys.executable, MANAGE, "stage", str(photo_path), "--model", "seedream-4", "--emulator", "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]  # every line is JSON
    assert LOGGER in {line["logger"] for line in lines}
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    changed = [line for line in lines if line["logger"] == LOGGER and "state" in line]
    assert [line["state"] for line in changed][-1] == "succeeded"
    attempt = Attempt.objects.get()
    final = changed[-1]
    assert final["job_id"] == attempt.job_id and final["attempt"] == 1 and final["attempt_id"] == attempt.pk
    assert final["prediction_id"] == attempt.prediction_id and final["config_version"] == 1
    assert final["level"] == "INFO"
    assert attempt.token not in result.stderr


def test_the_queue_logs_through_the_same_handler() -> None:
    """django-q2 adds a text handler of its own only when none is configured: its records take LOG_FORMAT too."""
    from django_q.conf import logger as queue_logger

    assert queue_logger.handlers == [] and queue_logger.propagate
    assert [handler.name for handler in logging.getLogger().handlers if handler.name == "console"] == ["console"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be 'text' or 'json', not 'xml'."),
        ({"STAGING_SIGNED_URL_SECONDS": "600"}, "STAGING_SIGNED_URL_SECONDS (600) must exceed"),
    ],
)
def test_bad_logging_and_link_settings_stop_the_start_with_the_reason(subprocess_env, env, message) -> None:
    result = subprocess.run(
        [sys.executable, MANAGE, "check"],
        env={**subprocess_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1]
