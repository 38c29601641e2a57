"""The opaque listing cursor: where each cloud resumes, bound to the query it continues.

A cloud's position is one key: every object of that cloud up to it, in the cloud's own
listing order, has been returned, and none after it (so S3 resumes with `StartAfter`,
Azure with `startFrom`). Nothing else is needed to resume; there are no page tokens.
Keys are kept relative to the prefix, and each key after the first only as what differs
from the key before it, so two clouds resuming at the same key cost one key: a cursor is
about 4/3 of that key's UTF-8 length plus 26 characters (under 1,400 for a 1,024-byte key).

The body is binary, base64url-encoded, behind a keyed checksum that also covers the source
and prefix, so truncation, corruption, edits and reuse with another query are rejected as
bad input. The key is not a secret: the checksum guards integrity, not access. Anyone can
make a cursor, so `decode` checks every field, and a position the service refuses is bad
input too (see `crosscloud.listing`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

from crosscloud.errors import BadRequest

VERSION = 2
_KEY = b"crosscloud-listing-cursor-v2"
_MAC_BYTES = 12
_START, _DONE, _AFTER = 0, 1, 2
MAX_KEY_BYTES = 4096  # Azure: 1,024 characters of up to 4 UTF-8 bytes; S3: 1,024 bytes
MAX_CHARS = 8192


@dataclass(frozen=True)
class Position:
    """Where one cloud resumes: after `after` in its own order (None: from its first
    object); `done`: nothing left in that cloud."""

    after: str | None = None
    done: bool = False


@dataclass(frozen=True)
class Cursor:
    source: str
    prefix: str
    positions: dict[str, Position]


def _mac(source: str, prefix: str, body: bytes) -> bytes:
    # source is a fixed word and prefix has no control characters: "\0" separates them.
    message = source.encode() + b"\0" + prefix.encode() + b"\0" + body
    return hmac.new(_KEY, message, hashlib.sha256).digest()[:_MAC_BYTES]


def encode(cursor: Cursor) -> str:
    body, previous = bytearray([VERSION]), b""
    for _, pos in sorted(cursor.positions.items()):
        if pos.done:
            body.append(_DONE)
        elif pos.after is None:
            body.append(_START)
        else:
            key = pos.after.removeprefix(cursor.prefix).encode()
            shared = len(_common_start(previous, key))
            body += struct.pack(">BHH", _AFTER, shared, len(key) - shared) + key[shared:]
            previous = key
    mac = _mac(cursor.source, cursor.prefix, bytes(body))
    return base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode()


def _common_start(a: bytes, b: bytes) -> bytes:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def invalid(reason: str) -> BadRequest:
    return BadRequest(f"cursor is invalid ({reason}); start again without a cursor",
                      code="invalid_cursor")


def decode(text: str, *, source: str, prefix: str, sources: tuple[str, ...]) -> Cursor:
    """Parse and check a cursor for this exact query; `BadRequest` for anything off."""
    if len(text) > MAX_CHARS:
        raise invalid("too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise invalid("not base64url") from None
    mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    if not body or not hmac.compare_digest(mac, _mac(source, prefix, body)):
        raise invalid("checksum mismatch: truncated, altered, or made for a listing with another "
                   "source or prefix")
    if body[0] != VERSION:
        raise invalid("unknown version")
    positions, offset, previous = {}, 1, b""
    for name in sorted(sources):
        if offset >= len(body):
            raise invalid("positions do not match the sources")
        tag, offset = body[offset], offset + 1
        if tag == _DONE:
            positions[name] = Position(done=True)
        elif tag == _START:
            positions[name] = Position()
        elif tag == _AFTER and offset + 4 <= len(body):
            shared, length = struct.unpack_from(">HH", body, offset)
            offset += 4
            key = previous[:shared] + body[offset:offset + length]
            offset += length
            if shared > len(previous) or offset > len(body) or len(key) > MAX_KEY_BYTES:
                raise invalid(f"malformed position for {name}")
            try:
                positions[name] = Position(after=prefix + key.decode())
            except UnicodeDecodeError:
                raise invalid(f"position for {name} is not UTF-8") from None
            previous = key
        else:
            raise invalid(f"malformed position for {name}")
    if offset != len(body):
        raise invalid("positions do not match the sources")
    return Cursor(source, prefix, positions)
