"""Domain errors and the ONE place that maps every failure to an HTTP status and envelope.

Services raise ``NotFound``, ``Forbidden``, ``Conflict``...; handlers never catch. Anything
unexpected becomes a 500 that says "Internal server error" and nothing else; the details go
to the log only. A database fault is never a 500: ``database_fault`` turns an unreachable,
stalled or timed-out database into a 503 and a full disk into a 507.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from shared.envelope import ErrorEnvelope, error_body

log = logging.getLogger("shared.errors")


class DomainError(Exception):
    status_code = 400
    message = "Bad request"

    def __init__(self, error: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.headers = headers or {}


class BadRequest(DomainError):
    status_code, message = 400, "Validation failed"


class Unauthorized(DomainError):
    status_code, message = 401, "Not authenticated"


class Forbidden(DomainError):
    status_code, message = 403, "Not allowed"


class NotFound(DomainError):
    status_code, message = 404, "Not found"


class Conflict(DomainError):
    status_code, message = 409, "Conflict"


class PreconditionFailed(DomainError):
    status_code, message = 412, "Version mismatch"


class TooLarge(DomainError):
    status_code, message = 413, "Too large"


class UnsupportedMediaType(DomainError):
    status_code, message = 415, "Unsupported media type"


class RateLimited(DomainError):
    status_code, message = 429, "Too many requests"

    def __init__(self, error: str, retry_after: int) -> None:
        super().__init__(error, headers={"Retry-After": str(max(1, retry_after))})


class OverQuota(DomainError):
    """A per-user quota is full (429, no Retry-After: waiting does not free it)."""

    status_code, message = 429, "Quota exceeded"


class Unavailable(DomainError):
    status_code, message = 503, "Service unavailable"


class DatabaseUnavailable(Unavailable):
    """The database could not be reached, or did not answer within its timeout."""


class InsufficientStorage(DomainError):
    """The database is out of disk space: nothing was saved."""

    status_code, message = 507, "Insufficient storage"


_HTTP_MESSAGES = {
    400: "Validation failed",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    411: "Length required",
    412: "Version mismatch",
    413: "Too large",
    415: "Unsupported media type",
    429: "Too many requests",
    431: "Request headers too large",
    503: "Service unavailable",
    507: "Insufficient storage",
}


def _respond(
    status: int, message: str, error: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(content=error_body(message, error), status_code=status, headers=headers or {})


# msgspec quotes the whole pattern a string failed to match; users need to know which field.
_REGEX_MESSAGE = re.compile(r"Expected `str` matching regex '.*?'(?=; |$)")


def _body_field_errors(request: Request) -> list[str]:
    """Every failing field of a JSON body, not only the first one msgspec stops at.

    Litestar validates the body in one pass that ends at the first error; to name every field,
    the cached body is checked again field by field against the handler's ``data`` type.
    """
    from litestar.utils.scope.state import ScopeState

    body = ScopeState.from_scope(request.scope).body
    handler = request.scope.get("route_handler")
    if not isinstance(body, bytes) or not body or handler is None:
        return []
    parameter = handler.parsed_fn_signature.parameters.get("data")
    data_type = getattr(parameter, "annotation", None)
    if not (isinstance(data_type, type) and issubclass(data_type, msgspec.Struct)):
        return []
    try:
        raw = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return []
    if not isinstance(raw, dict):
        return []
    errors: list[str] = []
    for field in msgspec.structs.fields(data_type):
        if field.encode_name not in raw:
            if field.required:
                errors.append(f"{field.encode_name}: required")
            continue
        try:
            msgspec.convert(raw[field.encode_name], type=field.type, strict=True)
        except msgspec.ValidationError as error:
            errors.append(f"{field.encode_name}: {str(error).split(' - at ')[0]}")
    return errors


def _validation_error(exc: ValidationException) -> str:
    """Name every field that failed: "limit: must be <= 100; name: expected str"."""
    parts: list[str] = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            key = item.get("key") or item.get("source") or "body"
            parts.append(f"{key}: {item.get('message', 'invalid')}")
    if not parts:
        parts.append(str(exc.detail or "invalid input"))
    return "; ".join(parts)


def domain_error_handler(_: Request, exc: DomainError) -> Response:
    return _respond(exc.status_code, exc.message, exc.error, exc.headers)


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        return internal_error_handler(request, exc)
    if isinstance(exc, ValidationException) or status == 400:
        error = _validation_error(exc) if isinstance(exc, ValidationException) else str(exc.detail)
        if isinstance(exc, ValidationException):
            body_errors = _body_field_errors(request)
            if len(body_errors) > 1:
                error = "; ".join(body_errors)
        return _respond(
            400, "Validation failed", _REGEX_MESSAGE.sub("has an invalid format", error)
        )
    message = _HTTP_MESSAGES.get(status, "Request failed")
    detail = str(exc.detail) if exc.detail else message
    if status == 404:
        detail = "No such resource"
    return _respond(status, message, detail, dict(exc.headers or {}))


def database_error_handler(request: Request, exc: Exception) -> Response:
    fault = database_fault(exc) or DatabaseUnavailable("The database is unavailable")
    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) and exc.__cause__ else exc
    log.warning(
        "database fault on %s %s -> %s: %r",
        request.method,
        request.url.path,
        fault.status_code,
        cause,
    )
    return _respond(fault.status_code, fault.message, fault.error, fault.headers)


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(
        HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error", "Internal server error"
    )


# SQLSTATE classes and codes that mean "the database cannot serve this now", not "bad input":
# 08 connection, 53 insufficient resources, 57 operator intervention (57014 is a statement
# timeout), 58 system/IO error, XX internal; lock timeouts, serialization failures, deadlocks
# and an idle transaction killed by the server are transient too.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58", "XX")
_UNAVAILABLE_STATES = {"55P03", "40001", "40P01", "25P03"}
_DISK_FULL = "53100"
_NO_SPACE = "no space left on device"
_ASYNCPG_DIR = os.path.dirname(asyncpg.__file__)


def database_fault(exc: BaseException) -> DomainError | None:
    """The answer for a database fault (503, or 507 for a full disk); None for anything else.

    The ONE rule for what counts as the database failing, used by the HTTP error mapping and
    by routes that answer differently (a WebSocket closes with 1013).
    """
    if isinstance(exc, DatabaseUnavailable | InsufficientStorage):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state == _DISK_FULL or _NO_SPACE in str(exc).lower():
            return InsufficientStorage(
                "The database is out of disk space; nothing was saved. Try again later"
            )
        if state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES:
            return DatabaseUnavailable("The database could not complete this; try again shortly")
        return None
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return DatabaseUnavailable("The database connection failed; try again shortly")
    if isinstance(exc, TimeoutError | OSError) and _raised_in_asyncpg(exc):
        return DatabaseUnavailable("The database did not answer in time; try again shortly")
    return None


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is the database failing (down, stalled, timed out, disk full)."""
    return database_fault(exc) is not None


def _raised_in_asyncpg(exc: BaseException) -> bool:
    """A timeout or OS error that came out of the database driver (not out of a sandbox)."""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(_ASYNCPG_DIR) or filename.startswith("asyncpg/"):
            return True
        tb = tb.tb_next
    return False


def unstorable_text_handler(_: Request, exc: Exception) -> Response:
    """Text PostgreSQL cannot hold (NUL, lone surrogates) is bad input, not a server fault."""
    return _respond(
        400, "Validation failed", "text fields must not contain NUL characters or invalid Unicode"
    )


def fallback_handler(request: Request, exc: Exception) -> Response:
    if isinstance(
        exc,
        (
            UnicodeEncodeError,
            asyncpg.exceptions.CharacterNotInRepertoireError,
            asyncpg.exceptions.UntranslatableCharacterError,
        ),
    ):
        return unstorable_text_handler(request, exc)
    if database_unavailable(exc):
        return database_error_handler(request, exc)
    return internal_error_handler(request, exc)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: domain_error_handler,
    DatabaseUnavailable: database_error_handler,
    InsufficientStorage: database_error_handler,
    HTTPException: http_error_handler,
    Exception: fallback_handler,
}


async def send_error(scope: Any, receive: Any, send: Any, exc: Exception) -> None:
    """Answer ``exc`` exactly as the app's exception handling would, for code that answers
    below Litestar's routing (``functions.workspace.routes.read_file_lane``)."""
    handler = next(EXCEPTION_HANDLERS[c] for c in type(exc).__mro__ if c in EXCEPTION_HANDLERS)
    request: Request = Request(scope, receive, send)
    response = handler(request, exc)
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)


_DESCRIPTIONS = {
    400: "Invalid input; every failing field is named in `error`",
    401: "Not authenticated",
    403: "Not allowed: not yours to change, or a cross-site request",
    404: "Not found, or not visible to the caller",
    405: "Method not allowed",
    409: "Conflict: duplicate or invalid state transition",
    412: "If-Match names a stale version",
    413: "Too large, or a workspace quota is exceeded",
    415: "The body is not application/json",
    429: "Rate limited or over a quota; see Retry-After",
    431: "Request headers too large",
    500: "Internal server error",
    503: "The database is unavailable or did not answer in time, or the server is too busy; "
    "try again shortly (see Retry-After)",
    507: "The database is out of disk space; nothing was saved",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI response entries for the error statuses a route really returns."""
    return {
        code: ResponseSpec(
            data_container=ErrorEnvelope, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in codes
    }
