"""Error tracking: Sentry starts only with SENTRY_DSN, with options that keep credentials out of every event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from multiprocessing import Queue, Value
from typing import Any

import httpx
import pytest
import sentry_sdk
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.utils import timezone
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from stagingsite.sentry import init_sentry
from tests.fixtures.loopback import loopback_server

DSN = "https://public-key@sentry.invalid/42"
TOKEN = "tok-Zz9-attempt-credential"
SIGNATURE = "v1,c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtbGVhaw=="
API_TOKEN = "stg_personal-token-never-sent"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Recorder(Transport):
    """A transport that keeps the envelopes in memory instead of sending them."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes if (event := envelope.get_event()) is not None]


@pytest.fixture
def sentry() -> Iterator[Recorder]:
    """Sentry started as the settings start it, with a recording transport; stopped again afterwards."""
    recorder = Recorder()
    assert init_sentry(DSN, environment="tests", transport=recorder)
    yield recorder
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def failing_task() -> None:
    raise ValueError("the queue task failed")


def test_without_a_dsn_nothing_starts() -> None:
    assert init_sentry("", environment="tests") is False
    assert not sentry_sdk.get_client().is_active()


def test_with_a_dsn_it_starts_with_options_that_send_no_credentials(sentry: Recorder) -> None:
    client = sentry_sdk.get_client()
    assert client.is_active() and client.transport is sentry
    options = client.options
    assert options["dsn"] == DSN and options["environment"] == "tests"
    assert not client.should_send_default_pii()  # sentry-sdk's data_collection supersedes send_default_pii
    collected = options["data_collection"]
    assert collected["provided_by_user"] and collected["user_info"] is False
    assert collected["http_bodies"] == [] and collected["stack_frame_variables"] is False
    assert collected["cookies"]["mode"] == "off"
    assert {"django", "logging"} <= set(client.integrations)


def test_a_failing_request_is_reported_without_its_credentials(sentry: Recorder, settings) -> None:
    """Through a real WSGI server, as in production: Sentry's WSGI middleware records the request."""
    settings.ROOT_URLCONF = "tests.stagingsite.urls"
    with loopback_server(QuietHandler, ThreadedWSGIServer, WSGIHandler()) as base:
        response = httpx.post(
            f"{base}/fail/?attempt={TOKEN}",
            content=json.dumps({"webhook": f"https://staging.example/webhooks/replicate/?attempt={TOKEN}"}),
            headers={
                "Content-Type": "application/json",
                "Webhook-Signature": SIGNATURE,
                "Authorization": f"Bearer {API_TOKEN}",
                "Webhook-Id": "msg_1",
            },
        )
    assert response.status_code == 500
    sentry_sdk.flush()
    (event,) = [event for event in sentry.events if event.get("exception")]
    (error,) = event["exception"]["values"]
    assert error["type"] == "RuntimeError" and "the view failed" in error["value"]
    request = event["request"]
    assert request["url"].endswith("/fail/") and request["method"] == "POST"
    assert request["query_string"] == "attempt=%5BFiltered%5D"
    assert request["headers"]["Webhook-Id"] == "msg_1"  # headers are there, minus the credentials
    assert not request.get("data")  # the body (a webhook's carries the token) is never attached
    assert all("vars" not in frame for frame in error["stacktrace"]["frames"])
    text = json.dumps(event, default=str)
    for secret in (TOKEN, SIGNATURE, API_TOKEN):
        assert secret not in text


def test_an_outgoing_requests_query_string_stays_out_of_breadcrumbs(sentry: Recorder) -> None:
    """A client's `image_url` may be a presigned link: its query (the signature) is not recorded."""
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
        client.get("https://photos.example/room.jpg?X-Amz-Signature=f00ba5&X-Amz-Expires=60")
    sentry_sdk.capture_message("after a download")
    sentry_sdk.flush()
    (event,) = sentry.events
    crumbs = [crumb for crumb in event["breadcrumbs"]["values"] if crumb.get("category") == "httplib"]
    assert crumbs and crumbs[-1]["data"]["url"] == "https://photos.example/room.jpg"
    assert crumbs[-1]["data"]["http.query"] == "[Filtered]"
    assert "f00ba5" not in json.dumps(event, default=str)


@pytest.mark.django_db(transaction=True)  # the worker closes the connection, as between tasks
def test_a_failed_queue_task_is_reported(sentry: Recorder) -> None:
    """The cluster's own code path: a worker runs the task, the monitor logs the failure at ERROR."""
    from django_q.monitor import monitor
    from django_q.worker import worker

    task_queue: Queue = Queue()
    result_queue: Queue = Queue()
    name = f"failing-{uuid.uuid4().hex[:8]}"
    task_queue.put(
        {
            "id": uuid.uuid4().hex,
            "name": name,
            "func": f"{__name__}.failing_task",
            "args": (),
            "kwargs": {},
            "started": timezone.now(),
        }
    )
    task_queue.put("STOP")
    worker(task_queue, result_queue, Value("f", -1), timeout=None)
    result_queue.put("STOP")
    monitor(result_queue)
    for queue in (task_queue, result_queue):
        queue.close()
        queue.join_thread()
    sentry_sdk.flush()

    reported = [event for event in sentry.events if event.get("logger") == "django-q"]
    assert len(reported) == 1 and reported[0]["level"] == "error"
    message = reported[0]["logentry"]["message"] if "logentry" in reported[0] else reported[0]["message"]
    assert name in message and "failing_task" in message and "the queue task failed" in message


def _client_state(**env: str) -> dict[str, Any]:
    """Whether the settings of a fresh process started Sentry, and with which options."""
    code = (
        "import json, django; django.setup()\n"
        "import sentry_sdk; client = sentry_sdk.get_client()\n"
        "options = client.options if client.is_active() else {}\n"
        "print(json.dumps({'active': client.is_active(), 'pii': client.should_send_default_pii(),"
        " 'environment': options.get('environment'), 'integrations': sorted(getattr(client, 'integrations', {}))}))\n"
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    child_env.update(DJANGO_SETTINGS_MODULE="stagingsite.settings", **env)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=django_settings.BASE_DIR,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_settings_start_sentry_only_when_a_dsn_is_set() -> None:
    assert _client_state() == {"active": False, "pii": False, "environment": None, "integrations": []}
    started = _client_state(SENTRY_DSN=DSN, SENTRY_ENVIRONMENT="staging")
    assert started["active"] and started["pii"] is False and started["environment"] == "staging"
    assert {"django", "logging"} <= set(started["integrations"])
