"""Shared HTTP shaping: JSON bodies, the error envelope, and the error boundary.

Every HTTP function goes through `handle_errors` (admin routes) or `handle_public_errors`
(function-level routes), so a failure becomes `{"error": {"code", "message"}}` with a
fitting status (and `Retry-After` where retrying helps), never a stack trace, token or
credential; function-level callers are not told account IDs, role ARNs, bucket or
container names or client IDs either.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import azure.functions as func

from crosscloud.errors import BadRequest, CrossCloudError, SettingError

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

# What a function-key caller is told when the app itself cannot do the work (5xx). The
# detailed message names roles, account IDs, buckets, containers and client IDs: it goes
# to the log, and an administrator sees the same cause in GET /api/diagnostics.
SETTING_NAME = re.compile(r"app setting ([A-Z][A-Za-z0-9_]*)")
SEE_LOGS = "an administrator finds the cause in the function logs and GET /api/diagnostics"
PUBLIC_MESSAGES = {
    "configuration_error": "the app is not configured correctly (an app setting is missing or malformed)",
    "identity_error": "the app's managed identity could not get a token; retry later",
    "identity_refused": "Microsoft Entra ID refused a token to the app's managed identity",
    "federation_error": "AWS refused to exchange the app's identity token for role credentials",
    "sts_unreachable": "AWS STS did not answer; retry later",
    "azure_forbidden": "Azure Storage refused the app's identity",
    "azure_container_not_found": "the app's Azure container does not exist",
    "azure_unavailable": "Azure Storage did not answer in time; retry later",
    "azure_error": "Azure Storage failed the request",
    "s3_forbidden": "S3 refused the app's AWS role",
    "s3_no_such_bucket": "the app's S3 bucket does not exist",
    "s3_unavailable": "S3 did not answer in time; retry later",
    "s3_error": "S3 failed the request",
    "integrity_error": "the bytes read did not match the object's size or checksum; retry",
    "short_read": "the cloud sent fewer bytes than the object's size; retry",
}


def public_message(exc: CrossCloudError) -> str:
    """The message for a function-key caller: the caller's own input errors (4xx) as they
    are, anything about the deployment (5xx) as a fixed sentence per error code."""
    if exc.status < 500:
        return exc.message
    setting = SETTING_NAME.search(exc.message) if isinstance(exc, SettingError) else None
    if setting:  # the setting's name only: its value, or an example value, may name resources
        return f"app setting {setting.group(1)} is missing or malformed ({exc.code}); {SEE_LOGS}"
    code = "federation_error" if exc.code.startswith("sts_") and exc.code != "sts_unreachable" else exc.code
    return f"{PUBLIC_MESSAGES.get(code, 'the request failed upstream')} ({exc.code}); {SEE_LOGS}"


def handle_errors(fn: Handler) -> Handler:
    """Admin routes: crosscloud errors as the JSON envelope with their full message."""
    return _boundary(fn, reveal=True)


def handle_public_errors(fn: Handler) -> Handler:
    """Function-level routes: the same envelope, but nothing about the deployment in it."""
    return _boundary(fn, reveal=False)


def _boundary(fn: Handler, *, reveal: bool) -> Handler:
    """Turn crosscloud errors into the JSON envelope; anything else into an opaque 500."""

    @functools.wraps(fn)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return fn(req)
        except CrossCloudError as exc:
            level = logging.WARNING if exc.status < 500 else logging.ERROR
            log.log(level, "%s %s -> %s %s: %s", req.method, _route(req), exc.status, exc.code, exc.message)
            message = exc.message if reveal else public_message(exc)
            return error_response(exc.code, message, exc.status, exc.retry_after)
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
