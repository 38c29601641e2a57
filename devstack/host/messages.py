"""The host's request and response, and the JSON body every host-layer error carries.

The real host answers its own errors (401, 404, 400 from Kestrel) with empty or plain bodies;
devstack gives them the app's envelope, `{"error": {"code", "message"}}`, so a client (and a
test) can always tell why, and never gets an HTML page or a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the raw request target, as sent
    headers: dict[str, str]  # names lower-cased, first value of each
    body: bytes
    base_url: str  # scheme://host[:port]


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    function: str = "-"  # what handled it, for the log line


def error(status: int, code: str, message: str, function: str = "-") -> Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Response(status, {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"},
                    body, function)
