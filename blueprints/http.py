"""Shared HTTP shaping: JSON bodies, the error envelope, and the error boundary.

Every HTTP function goes through `handle_errors`, so a failure becomes
`{"error": {"code", "message"}}` with a fitting status (and `Retry-After` where retrying
helps), never a stack trace, token or credential.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from crosscloud.errors import BadRequest, CrossCloudError

log = logging.getLogger("crosscloud.http")
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status,
        mimetype="application/json", charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def error_response(code: str, message: str, status: int, retry_after: int | None = None) -> func.HttpResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return json_response({"error": {"code": code, "message": message}}, status, headers)


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def handle_errors(fn: Handler) -> Handler:
    """Turn crosscloud errors into the JSON envelope; anything else into an opaque 500."""

    @functools.wraps(fn)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return fn(req)
        except CrossCloudError as exc:
            level = logging.WARNING if exc.status < 500 else logging.ERROR
            log.log(level, "%s %s -> %s %s: %s", req.method, _route(req), exc.status, exc.code, exc.message)
            return error_response(exc.code, exc.message, exc.status, exc.retry_after)
        except Exception as exc:  # the boundary: log the type, never echo internals
            log.error("%s %s -> 500 unexpected %s", req.method, _route(req), type(exc).__name__,
                      exc_info=logging.getLogger().isEnabledFor(logging.DEBUG))
            return error_response("internal_error", "unexpected error; see the function logs", 500)

    return wrapper


def _route(req: func.HttpRequest) -> str:
    """The request path without its query string (which may carry `code=`)."""
    return req.url.split("?", 1)[0]


def query_flag(req: func.HttpRequest, name: str) -> bool:
    raw = (req.params.get(name) or "false").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {raw[:20]!r}", code=f"invalid_{name}")
