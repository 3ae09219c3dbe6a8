"""The one mapping of domain errors to HTTP answers (`api.errors`), as the API's root answers them.

Each case raises the error as a service would and checks the status and the whole body; then a few
go through real endpoints, to show the views let the errors through instead of catching them.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.test import Client, RequestFactory
from pydantic import ValidationError

from api import errors
from api.errors import body_too_big_detail
from api.root import api
from api.services import UnknownTokenError
from models_config import services
from models_config.canary import NoCanaryError
from models_config.models import ModelConfigVersion
from models_config.registry import REGISTRY, UnknownModelError
from models_config.schemas import QwenImageEditConfig, field_errors
from staging.errors import (
    ImageRejected,
    JobBusyError,
    JobInputError,
    OutputNotFound,
    OverrideNotAllowed,
    ReplicateNotConfigured,
)
from staging.fetch import FetchRefused
from tests.fixtures.config_rows import changed_config

SLUG = "qwen-image-edit"
KNOWN = ", ".join(REGISTRY)
SEED_ERROR = {"loc": ["seed"], "msg": "Input should be a valid integer", "type": "int_parsing"}


def answer(exc: Exception, content_type: str = "application/json") -> tuple[int, object]:
    request = RequestFactory().post("/api/v1/anything", "{}", content_type=content_type)
    response = api.on_exception(request, exc)
    return response.status_code, json.loads(response.content)


CASES = [
    pytest.param(RequestDataTooBig("too big"), 413, {"detail": body_too_big_detail()}, id="body-too-big"),
    pytest.param(
        MultiPartParserError("Invalid boundary in multipart: None"),
        400,
        {"detail": "The request body could not be read: Invalid boundary in multipart: None"},
        id="multipart",
    ),
    pytest.param(
        UnreadablePostError("connection reset"),
        400,
        {"detail": "The request body could not be read: connection reset"},
        id="unreadable",
    ),
    pytest.param(TooManyFieldsSent("Too many fields."), 400, {"detail": "Too many fields."}, id="fields"),
    pytest.param(TooManyFilesSent("Too many files."), 400, {"detail": "Too many files."}, id="files"),
    pytest.param(BadRequest(), 400, {"detail": "Bad request."}, id="bad-request"),
    pytest.param(
        SuspiciousOperation("Attempted access to '/etc/passwd' denied."),
        400,
        {"detail": "The request was refused as malformed."},  # never the server path in the message
        id="suspicious",
    ),
    pytest.param(
        UnknownModelError("nope"), 404, {"detail": f"Unknown model 'nope'; known models: {KNOWN}."}, id="slug"
    ),
    pytest.param(services.UnknownVersionError(SLUG, 9), 404, {"detail": f"{SLUG} has no version 9."}, id="version"),
    pytest.param(UnknownTokenError("No API token 7."), 404, {"detail": "No API token 7."}, id="token"),
    pytest.param(PermissionDenied(), 403, {"detail": "Permission denied."}, id="denied"),
    pytest.param(JobBusyError("Job 3 is still processing."), 409, {"detail": "Job 3 is still processing."}, id="busy"),
    pytest.param(NoCanaryError(SLUG), 409, {"detail": str(NoCanaryError(SLUG))}, id="canary"),
    pytest.param(
        services.VersionConflictError(SLUG, 1, None),
        409,
        {
            "detail": str(services.VersionConflictError(SLUG, 1, None)),
            "active_version": None,
            "active_author": None,
            "active_comment": None,
        },
        id="conflict-without-version",
    ),
    pytest.param(ReplicateNotConfigured(), 503, {"detail": str(ReplicateNotConfigured())}, id="not-configured"),
    pytest.param(
        services.ConfigError("Cannot."),
        422,
        {"detail": [{"loc": [], "msg": "Cannot.", "type": "value_error"}]},
        id="config-error",
    ),
    pytest.param(
        services.ConfigValidationError([SEED_ERROR]),
        422,
        {"detail": [{**SEED_ERROR, "loc": ["body", "config", "seed"]}]},
        id="config-in-the-request",
    ),
    pytest.param(
        services.ConfigValidationError([{"loc": ["comment"], "msg": "Say why.", "type": "missing"}], loc_prefix=()),
        422,
        {"detail": [{"loc": ["body", "comment"], "msg": "Say why.", "type": "missing"}]},
        id="comment",
    ),
    pytest.param(
        services.ConfigValidationError([SEED_ERROR], loc_prefix=None),
        422,
        {
            "detail": [
                {
                    "loc": [],
                    "msg": "Invalid configuration: seed: Input should be a valid integer",
                    "type": "int_parsing",
                }
            ]
        },
        id="stored-config",
    ),
    pytest.param(
        JobInputError(
            "Invalid job.",
            [
                {"loc": ["model"], "msg": "Unknown.", "type": "value_error"},
                {"loc": ["config"], "msg": "Not an object.", "type": "dict_type"},
                {"loc": ["config", "image_input", 0], "msg": "Too long.", "type": "string_too_long"},
                {"loc": ["config", "3", "²"], "msg": "Extra.", "type": "extra_forbidden"},
            ],
        ),
        422,
        {
            "detail": [
                {"loc": ["body", "model"], "msg": "Unknown.", "type": "value_error"},
                {"loc": ["body", "config"], "msg": "Not an object.", "type": "dict_type"},
                {"loc": ["body", "config", "image_input", 0], "msg": "Too long.", "type": "string_too_long"},
                {"loc": ["body", "config", "3", "²"], "msg": "Extra.", "type": "extra_forbidden"},
            ]
        },
        id="job-input",
    ),
    pytest.param(
        JobInputError("Only a message."),
        422,
        {"detail": [{"loc": ["body"], "msg": "Only a message.", "type": "value_error"}]},
        id="job-input-message-only",
    ),
    pytest.param(
        JobInputError.about("instructions", "Too long."),
        422,
        {"detail": [{"loc": ["body", "instructions"], "msg": "Too long.", "type": "value_error"}]},
        id="job-input-job-field",
    ),
    pytest.param(
        OverrideNotAllowed(SLUG, ["prompt_template"], ["seed"]),
        403,
        {"detail": str(OverrideNotAllowed(SLUG, ["prompt_template"], ["seed"]))},
        id="override-not-allowed",
    ),
    pytest.param(
        OutputNotFound("Job 7 has no stored output 3 in attempt 1."),
        404,
        {"detail": "Job 7 has no stored output 3 in attempt 1."},
        id="output-not-found",
    ),
    pytest.param(
        FetchRefused("The image URL has no host."),
        422,
        {"detail": [{"loc": ["body", "image_url"], "msg": "The image URL has no host.", "type": "value_error"}]},
        id="fetch-refused",
    ),
]


@pytest.mark.parametrize(("exc", "status", "body"), CASES)
def test_each_domain_error_has_one_answer(exc, status, body) -> None:
    assert answer(exc) == (status, body)


def test_an_unusable_photo_points_at_the_field_that_carried_it() -> None:
    exc = ImageRejected("The photo could not be read as an image.")
    item = {"msg": str(exc), "type": "value_error"}
    assert answer(exc, "application/json") == (422, {"detail": [{"loc": ["body", "image_url"], **item}]})
    assert answer(exc, "multipart/form-data; boundary=x") == (422, {"detail": [{"loc": ["body", "image"], **item}]})


@pytest.mark.django_db
def test_a_conflict_names_who_made_the_active_version_and_why() -> None:
    services.ensure_config_rows()
    author = User.objects.create_user("ada")
    services.save_version(SLUG, changed_config(SLUG), author=author, comment="warmer light")
    with pytest.raises(services.VersionConflictError) as info:
        services.save_version(SLUG, {}, author=author, comment="late", base_version=1, check_base=True)
    status, body = answer(info.value)
    assert status == 409
    assert body == {
        "detail": f"{info.value} v2 is by ada: 'warmer light'.",
        "active_version": 2,
        "active_author": "ada",
        "active_comment": "warmer light",
    }


def test_pydantic_errors_become_loc_msg_type_items_under_a_prefix() -> None:
    with pytest.raises(ValidationError) as info:
        QwenImageEditConfig.model_validate({"output_quality": "secret-value", "bogus": 1})
    items = field_errors(info.value, ("body", "config"))
    assert [item["loc"] for item in items] == [["body", "config", "output_quality"], ["body", "config", "bogus"]]
    assert all(set(item) == {"loc", "msg", "type"} for item in items)  # no `input`: it may echo what was sent
    assert "secret-value" not in json.dumps(items)
    assert field_errors(info.value.errors()) == field_errors(info.value)  # stored copies read the same


def test_every_mapping_is_checked_here() -> None:
    covered = {type(case.values[0]) for case in CASES} | {ImageRejected}
    assert covered == set(errors.HANDLERS)


# --- through real endpoints: the views catch nothing --------------------------------------------


@pytest.fixture
def root_client(db) -> Client:
    services.ensure_config_rows()
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def test_a_service_refusal_reaches_the_client_as_mapped(root_client, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise services.ConfigError("The config store is read-only today.")

    monkeypatch.setattr(services, "store_config", refuse)
    body = {"config": {}, "comment": "try", "base_version": 1}
    response = root_client.put(f"/api/v1/admin/models/{SLUG}/config", json.dumps(body), "application/json")
    item = {"loc": [], "msg": "The config store is read-only today.", "type": "value_error"}
    assert (response.status_code, response.json()) == (422, {"detail": [item]})


def test_activating_a_version_that_no_longer_validates_is_422_with_a_list_like_the_rest(root_client) -> None:
    services.save_version(SLUG, changed_config(SLUG), author=None, comment="v2")
    ModelConfigVersion.objects.filter(model_config__slug=SLUG, number=1).update(config={"output_quality": 999})
    response = root_client.generic("POST", f"/api/v1/admin/models/{SLUG}/config/versions/1/activate")
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert item["loc"] == []  # nothing the request sent is to blame: the stored version is
    assert item["msg"].startswith("Invalid configuration: output_quality:")
    assert services.selectors.get_active_config(SLUG).version_number == 2


def test_an_unknown_version_is_404_even_with_a_stale_base_version(root_client) -> None:
    url = f"/api/v1/admin/models/{SLUG}/config/versions/9/activate"
    response = root_client.post(url, {"base_version": 7}, "application/json")
    assert (response.status_code, response.json()) == (404, {"detail": f"{SLUG} has no version 9."})
