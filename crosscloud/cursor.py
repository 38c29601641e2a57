"""The opaque listing cursor: each cloud's position, bound to the query it continues.

A position is (the page token of the page holding the next object, the last key already
returned from that page). Resuming lists from the token and skips keys up to that one,
which works with any store's tokens (S3 continuation tokens, Azure markers).

The cursor is base64url JSON with a keyed checksum: truncation, corruption and edits are
rejected as bad input. The key is not a secret; the checksum guards integrity, not access
(a caller can only move within a listing it may already read, since the prefix and
source are bound into the cursor and the container and bucket come from settings).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from crosscloud.errors import BadRequest

VERSION = 1
_KEY = b"crosscloud-listing-cursor-v1"
_MAC_BYTES = 12


@dataclass(frozen=True)
class Position:
    """Where one cloud's listing resumes. `done`: nothing left in that cloud."""

    token: str | None = None
    after: str | None = None
    done: bool = False


@dataclass(frozen=True)
class Cursor:
    source: str
    prefix: str
    positions: dict[str, Position]


def encode(cursor: Cursor) -> str:
    body = json.dumps({
        "v": VERSION, "s": cursor.source, "p": cursor.prefix,
        "pos": {name: ("done" if pos.done else [pos.token, pos.after])
                for name, pos in sorted(cursor.positions.items())},
    }, separators=(",", ":"), ensure_ascii=False).encode()
    mac = hmac.new(_KEY, body, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode()


def _bad(reason: str) -> BadRequest:
    return BadRequest(f"cursor is invalid ({reason}); start again without a cursor",
                      code="invalid_cursor")


def decode(text: str, *, source: str, prefix: str, sources: tuple[str, ...]) -> Cursor:
    """Parse and check a cursor for this exact query; `BadRequest` for anything off."""
    if len(text) > 16384:
        raise _bad("too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _bad("not base64url") from None
    mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(
            mac, hmac.new(_KEY, body, hashlib.sha256).digest()[:_MAC_BYTES]):
        raise _bad("checksum mismatch: truncated or altered")
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise _bad("not JSON") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise _bad("unknown version")
    if data.get("s") != source or data.get("p") != prefix:
        raise _bad("it belongs to a listing with another source or prefix")
    raw_positions = data.get("pos")
    if not isinstance(raw_positions, dict) or set(raw_positions) != set(sources):
        raise _bad("positions do not match the sources")
    positions: dict[str, Position] = {}
    for name, value in raw_positions.items():
        if value == "done":
            positions[name] = Position(done=True)
        elif (isinstance(value, list) and len(value) == 2
              and all(v is None or isinstance(v, str) for v in value)):
            positions[name] = Position(token=value[0], after=value[1])
        else:
            raise _bad(f"malformed position for {name}")
    return Cursor(source, prefix, positions)
