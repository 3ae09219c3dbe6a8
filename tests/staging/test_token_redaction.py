"""Attempt tokens stay out of the logs: access-log lines carry the webhook URL whole, so the handlers redact it.

The records go through the handlers `settings.LOGGING` installed (what runserver's `django.server` and
every other logger write with), into a buffer instead of the terminal.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from staging import gateway
from stagingsite.log_filters import REDACTED, SECRET_PARAMS, RedactTokens

TOKEN = "tok_" + "a1B2" * 8


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What the configured handlers of `django.server` and of the root logger write, in one buffer."""
    buffer = io.StringIO()
    handlers = [*logging.getLogger("django.server").handlers, *logging.getLogger().handlers]
    handlers = [h for h in handlers if isinstance(h, logging.StreamHandler) and RedactTokens in map(type, h.filters)]
    assert len(handlers) >= 2, "the django.server and console handlers should both redact tokens"
    streams = [handler.setStream(buffer) for handler in handlers]
    yield buffer
    for handler, stream in zip(handlers, streams, strict=True):
        handler.setStream(stream)


def test_the_redacted_parameter_is_the_webhook_urls_token_parameter() -> None:
    assert gateway.TOKEN_PARAM in SECRET_PARAMS


def test_runservers_access_line_for_a_webhook_shows_no_token(written: io.StringIO) -> None:
    # What django.core.servers.basehttp.WSGIRequestHandler.log_message logs for one request.
    request_line = f"POST /webhooks/replicate/?attempt={TOKEN} HTTP/1.1"
    logging.getLogger("django.server").info('"%s" %s %s', request_line, "200", "11", extra={"status_code": 200})
    line = written.getvalue()
    assert f"/webhooks/replicate/?attempt={REDACTED} HTTP/1.1" in line
    assert TOKEN not in line


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (f"GET /x?attempt={TOKEN}", f"GET /x?attempt={REDACTED}"),
        (f"/x?a=1&attempt={TOKEN}&b=2", f"/x?a=1&attempt={REDACTED}&b=2"),
        (
            f"url='https://h/webhooks/replicate/?attempt={TOKEN}'",
            f"url='https://h/webhooks/replicate/?attempt={REDACTED}'",
        ),
        ("no token here: attempt 12 failed", "no token here: attempt 12 failed"),
    ],
)
def test_any_logger_through_the_console_handler(written: io.StringIO, message: str, expected: str) -> None:
    logging.getLogger("staging.anything").warning("%s", message)
    assert expected in written.getvalue()
    assert TOKEN not in written.getvalue()


def test_a_record_without_a_token_keeps_its_arguments() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "job %s attempt %s", (3, 1), None)
    assert RedactTokens().filter(record)
    assert (record.msg, record.args) == ("job %s attempt %s", (3, 1))
