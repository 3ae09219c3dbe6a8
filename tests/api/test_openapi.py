"""The OpenAPI document matches the API: what it declares, and what schemathesis finds when it uses it.

The document is checked for what a client relies on (every operation lists its error statuses with
their bodies, `model` is an enum of the registered slugs, comment limits, activate's 422 a list). Then
schemathesis generates requests from it, valid and invalid, and sends them to the whole Django stack
in this process (its WSGI application: no socket, nothing leaves the machine) with a staff token: no
answer may be a 500, a status the document does not list, or a body that does not match its schema.
The photo URLs it invents are never fetched: name resolution and connections off loopback fail here.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.root import api
from api.schemas import ALWAYS, WITH_BODY
from models_config import services as config_services
from models_config.models import COMMENT_MAX_LENGTH
from models_config.registry import REGISTRY
from staging.models import Attempt, StagingJob
from tests.fixtures.users import make_staff

ERROR_STATUSES = {"400", "401", "403", "404", "409", "413", "422", "429", "503"}
# A bound on the generated requests per operation, so the run stays well under a minute on 2 cores.
EXAMPLES_PER_OPERATION = 25


def served() -> dict:
    """The document as a client reads it (JSON: status codes are strings)."""
    return json.loads(json.dumps(api.get_openapi_schema()))


@pytest.fixture(scope="module")
def document() -> dict:
    return served()


def operations(document: dict) -> Iterator[tuple[str, str, dict]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


# --- what the document declares -----------------------------------------------------------------


def test_every_operation_documents_its_error_answers_with_their_bodies(document: dict) -> None:
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        responses = operation["responses"]
        statuses = set(responses)
        assert {str(status) for status in ALWAYS} <= statuses, (method, path)
        if "requestBody" in operation:
            assert {str(status) for status in WITH_BODY} <= statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        for status in statuses & ERROR_STATUSES:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            body = schemas[ref.rsplit("/", 1)[1]]
            assert "detail" in body["properties"], (method, path, status)
            assert responses[status]["description"] != "Unprocessable Content", "each status says what it means"
            if status == "422":  # a list of {loc, msg, type} everywhere, activate included
                assert body["properties"]["detail"]["type"] == "array", (method, path)


def test_model_is_an_enum_of_the_registered_slugs(document: dict) -> None:
    create = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert create["multipart/form-data"]["schema"]["properties"]["model"]["enum"] == list(REGISTRY)
    assert create["application/json"]["schema"]["properties"]["model"]["enum"] == list(REGISTRY)


def test_comment_has_its_length_limits(document: dict) -> None:
    comment = document["components"]["schemas"]["ConfigIn"]["properties"]["comment"]
    assert (comment["minLength"], comment["maxLength"]) == (1, COMMENT_MAX_LENGTH)


def test_conflicts_on_a_config_name_the_version_that_won(document: dict) -> None:
    for path in ("/api/v1/admin/models/{slug}/config", "/api/v1/admin/models/{slug}/config/versions/{number}/activate"):
        for method, operation in document["paths"][path].items():
            if "409" in operation["responses"]:
                ref = operation["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ConflictOut"), (method, path)


# --- schemathesis against the running stack -----------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Invented photo URLs go nowhere: names do not resolve and only loopback accepts a connection."""
    refused: list[object] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def loopback(host: object) -> bool:
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return host == "localhost"

    def getaddrinfo(host, *args, **kwargs):
        try:
            ipaddress.ip_address(str(host))
        except ValueError:
            if host != "localhost":
                refused.append(host)
                raise socket.gaierror(socket.EAI_NONAME, "no name resolution in this test") from None
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and not loopback(address[0]):
            refused.append(address)
            raise ConnectionRefusedError("only loopback in this test")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return refused


@pytest.fixture
def in_test_transaction() -> Iterator[None]:
    """Requests through the WSGI app share the test's transaction, as Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def stack(db, settings, in_test_transaction, offline):
    """The project's WSGI application over the test database: config rows, and one finished job to reprocess."""
    settings.REPLICATE_API_TOKEN = "r8_test"  # job creation runs its checks; nothing is sent before a worker runs
    settings.REPLICATE_BASE_URL = "http://127.0.0.1:9"  # and a worker, if one ran, would only reach loopback
    config_services.ensure_config_rows()
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug="qwen-image-edit")
    Attempt.objects.create(job=job, number=1, state=Attempt.State.FAILED)
    return get_wsgi_application()


@pytest.fixture
def staff_token(db, token_for) -> str:
    return token_for(make_staff("fuzzer", is_superuser=True))


def test_the_served_document_is_the_one_tested(client) -> None:
    assert client.get("/api/v1/openapi.json").json() == served()


# The document the API serves (test above), loaded once; the requests go to `stack`.
schema = schemathesis.openapi.from_dict(served())


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same requests every run: a failure here is reproducible
    database=None,  # and nothing is written to .hypothesis/
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_no_undocumented_status(case, stack, staff_token: str) -> None:
    response = case.call(app=stack, headers={"Authorization": f"Bearer {staff_token}"})
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
