"""The one mapping of domain errors to HTTP answers, installed on the ninja root as exception handlers.

Views raise (or let through) what the services raise; nothing in a view catches a domain error to turn
it into a status code. Each handler below names the errors it answers and returns `(status, body)`;
`install` registers them on a `NinjaAPI`. Ninja picks a handler by the error's class hierarchy, so a
subclass with its own handler (`JobBusyError` under `JobInputError`) gets its own answer.

The bodies keep ninja's shapes: `{"detail": "message"}`, and for every 422 `{"detail": [{loc, msg,
type}]}` with `loc` starting at `"body"`, as ninja's own request validation reports a bad field (empty
when no field of the request is to blame). A request that cannot be read at all (a multipart body
without a boundary, a body over `DATA_UPLOAD_MAX_MEMORY_SIZE`) is a JSON 400 or 413 too, never
Django's HTML page or, in DEBUG, ninja's traceback. Errors say
where they point themselves (`ConfigValidationError.loc_prefix`, the `loc` of each of
`JobInputError.errors`), so no handler needs to know which endpoint raised them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import Throttled
from ninja.errors import ValidationError as NinjaValidationError

from models_config.canary import NoCanaryError
from models_config.registry import UnknownModelError
from models_config.schemas import describe_errors
from models_config.services import ConfigError, ConfigValidationError, UnknownVersionError, VersionConflictError
from staging.errors import (
    ImageRejected,
    JobBusyError,
    JobInputError,
    OutputNotFound,
    OverrideNotAllowed,
    ReplicateNotConfigured,
)
from staging.fetch import FetchRefused

from .schemas import ConflictOut
from .services import UnknownTokenError

Answer = tuple[int, dict[str, Any]]
Handler = Callable[[HttpRequest, Any], Answer]

HANDLERS: dict[type[Exception], Handler] = {}


def answers(*exc_classes: type[Exception]) -> Callable[[Handler], Handler]:
    """Register the decorated function as the answer to `exc_classes`."""

    def register(handler: Handler) -> Handler:
        for exc_class in exc_classes:
            HANDLERS[exc_class] = handler
        return handler

    return register


def install(api: NinjaAPI) -> None:
    """Make every answer below one of `api`'s exception handlers."""
    for exc_class, handler in HANDLERS.items():
        api.add_exception_handler(exc_class, _responder(api, handler))
    api.add_exception_handler(Throttled, _throttled(api))


def _throttled(api: NinjaAPI) -> Callable[[HttpRequest, Throttled], HttpResponse]:
    """429 with Retry-After, whether the API's rate limit or the failed-authentication one refused (the
    latter is raised during authentication, where ninja would not add the header itself)."""

    def respond(request: HttpRequest, exc: Throttled) -> HttpResponse:
        wait = max(1, math.ceil(exc.wait)) if exc.wait is not None else None
        detail = "Too many requests." + (f" Retry in {wait} s." if wait is not None else "")
        response = api.create_response(request, {"detail": detail}, status=429)
        if wait is not None:
            response["Retry-After"] = str(wait)
        return response

    return respond


def _responder(api: NinjaAPI, handler: Handler) -> Callable[[HttpRequest, Exception], HttpResponse]:
    def respond(request: HttpRequest, exc: Exception) -> HttpResponse:
        status, body = handler(request, exc)
        return api.create_response(request, body, status=status)

    return respond


def field_error(loc: list[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    """One `{loc, msg, type}` item, for a refusal that is not pydantic's (see `schemas.field_errors`)."""
    return {"loc": loc, "msg": msg, "type": type_}


def invalid(*errors: dict[str, Any]) -> NinjaValidationError:
    """For a view that parses its body itself: raise this and ninja answers 422 as for its own parsing."""
    return NinjaValidationError(list(errors))


def _invalid(*errors: dict[str, Any]) -> Answer:
    return 422, {"detail": list(errors)}


# --- 400, 413: the request itself cannot be read --------------------------------------------------


def body_too_big_detail() -> str:
    """The answer to a body over Django's in-memory limit: the API's and the webhook's 413."""
    return (
        f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes this service reads "
        "into memory (DATA_UPLOAD_MAX_MEMORY_SIZE). Send a photo as a multipart file upload: files do not count."
    )


@answers(RequestDataTooBig)
def body_too_big(request: HttpRequest, exc: RequestDataTooBig) -> Answer:
    return 413, {"detail": body_too_big_detail()}


@answers(MultiPartParserError, UnreadablePostError)
def body_unreadable(request: HttpRequest, exc: Exception) -> Answer:
    """A multipart body without a boundary, a truncated one, a client gone mid-upload."""
    return 400, {"detail": f"The request body could not be read: {exc}"}


@answers(TooManyFieldsSent, TooManyFilesSent, BadRequest)
def bad_request(request: HttpRequest, exc: Exception) -> Answer:
    return 400, {"detail": str(exc) or "Bad request."}


@answers(SuspiciousOperation)
def suspicious(request: HttpRequest, exc: SuspiciousOperation) -> Answer:
    """Django refused something in the request as an attack; its message may name server paths, so none."""
    return 400, {"detail": "The request was refused as malformed."}


# --- 403, 404, 409, 503: a message ---------------------------------------------------------------


@answers(PermissionDenied)
def forbidden(request: HttpRequest, exc: PermissionDenied) -> Answer:
    return 403, {"detail": str(exc) or "Permission denied."}


@answers(OverrideNotAllowed)
def override_not_allowed(request: HttpRequest, exc: OverrideNotAllowed) -> Answer:
    """A config override key the user may not set: the message names each one and what may be set."""
    return 403, {"detail": str(exc)}


@answers(UnknownModelError, UnknownVersionError, OutputNotFound, UnknownTokenError)
def not_found(request: HttpRequest, exc: LookupError) -> Answer:
    """A model slug, version number, job output or token id in the path that does not exist (or, for a token,
    is not the caller's); the message says which, and for models and versions lists what does."""
    return 404, {"detail": str(exc)}


@answers(JobBusyError, NoCanaryError)
def busy(request: HttpRequest, exc: JobBusyError | NoCanaryError) -> Answer:
    """A job still running, or a canary promoted or stopped that is not running (anymore)."""
    return 409, {"detail": str(exc)}


@answers(VersionConflictError)
def version_conflict(request: HttpRequest, exc: VersionConflictError) -> Answer:
    """Name the version that won, its author and comment, so the client can show what changed."""
    version = exc.active_version
    detail = str(exc)
    if version is not None:
        detail += f" v{version.number} is by {version.author_name or 'nobody (system)'}: {version.comment!r}."
    body = ConflictOut(
        detail=detail,
        active_version=exc.active,
        active_author=version.author_name if version else None,
        active_comment=version.comment if version else None,
    )
    return 409, body.model_dump()


@answers(ReplicateNotConfigured)
def not_configured(request: HttpRequest, exc: ReplicateNotConfigured) -> Answer:
    return 503, {"detail": str(exc)}


# --- 422: what was sent cannot be used ----------------------------------------------------------


@answers(ConfigError)
def config_refused(request: HttpRequest, exc: ConfigError) -> Answer:
    """A config change the service refused for a reason no field of the request explains (`loc` is empty)."""
    return _invalid(field_error([], str(exc)))


@answers(ConfigValidationError)
def config_invalid(request: HttpRequest, exc: ConfigValidationError) -> Answer:
    """Per field, under where the config sat in the request. A stored version that no longer validates
    (`loc_prefix` None) was not sent: its errors have an empty `loc` and name the field in the message."""
    if exc.loc_prefix is None:
        return _invalid(
            *(
                field_error([], f"Invalid configuration: {describe_errors([error])}", error["type"])
                for error in exc.errors
            )
        )
    return _invalid(*({**error, "loc": ["body", *exc.loc_prefix, *error["loc"]]} for error in exc.errors))


@answers(JobInputError)
def job_input_invalid(request: HttpRequest, exc: JobInputError) -> Answer:
    """Each of `JobInputError.errors` under "body" (their `loc` starts at the job's fields, keys and list
    indexes as pydantic reported them); an error without field errors is about the request as a whole."""
    errors = exc.errors or [field_error([], str(exc))]
    return _invalid(*({**error, "loc": ["body", *error["loc"]]} for error in errors))


@answers(ImageRejected)
def image_rejected(request: HttpRequest, exc: ImageRejected) -> Answer:
    """The photo is unusable: a JSON request named it by `image_url`, a form upload sent it as `image`."""
    field = "image_url" if (request.content_type or "").lower() == "application/json" else "image"
    return _invalid(field_error(["body", field], str(exc)))


@answers(FetchRefused)
def fetch_refused(request: HttpRequest, exc: FetchRefused) -> Answer:
    """The photo's URL may not be fetched, or did not answer with something usable."""
    return _invalid(field_error(["body", "image_url"], str(exc)))
