"""Reading one object: key validation, inline bodies up to a cap, short-lived links above it."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

from crosscloud.errors import BadRequest, IntegrityError
from crosscloud.stores.base import MAX_KEY_BYTES, ObjectInfo, ObjectReader, ObjectStore


def validate_key(key: str | None) -> str:
    """A key both clouds can hold: non-empty, at most 1,024 UTF-8 bytes, no control characters.

    Each store refuses on top of this what its cloud would resolve to another object
    (Azure: `.`/`..` segments, a segment ending with a dot, a backslash).
    """
    if not key:
        raise BadRequest("object key is empty", code="invalid_key")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise BadRequest("object key contains control characters", code="invalid_key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BadRequest(f"object key is longer than {MAX_KEY_BYTES} UTF-8 bytes", code="invalid_key")
    return key


def open_object(store: ObjectStore, key: str) -> ObjectReader:
    """Open one object for streaming (the CLI's `get`): the key checked, the version pinned."""
    return store.open(validate_key(key))


@dataclass(frozen=True)
class Link:
    url: str
    expires_at: dt.datetime

    def as_json(self) -> dict[str, str]:
        return {"url": self.url, "expires_at": self.expires_at.isoformat().replace("+00:00", "Z")}


def short_lived_link(store: ObjectStore, key: str, ttl_seconds: int, *, known_to_exist: bool = False) -> Link:
    """A read-only URL valid for `ttl_seconds` (S3 presigned / Azure user delegation SAS)."""
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=ttl_seconds)
    return Link(store.link(validate_key(key), ttl_seconds, known_to_exist=known_to_exist), expires)


@dataclass(frozen=True)
class Inline:
    """An object small enough to answer with: its properties and all of its bytes."""

    info: ObjectInfo
    body: bytes


def read_all(reader: ObjectReader) -> bytes:
    """The reader's bytes in one buffer, exactly `info.size` of them.

    `BytesIO.getvalue()` hands over its own buffer when nothing else views it, and
    `func.HttpResponse` keeps a `bytes` body as is, so the function holds one copy of the
    body plus one chunk in flight (a `b"".join` of the chunks would hold two).
    """
    size = reader.info.size
    buffer = io.BytesIO()
    for chunk in reader.iter_chunks():
        if buffer.tell() + len(chunk) > size:
            raise IntegrityError(f"read more than the {size} bytes announced for {reader.info.key!r}")
        buffer.write(chunk)
    if buffer.tell() != size:
        raise IntegrityError(f"short read: got {buffer.tell()} of {size} bytes for {reader.info.key!r}",
                             code="short_read")
    return buffer.getvalue()


def read_or_link(store: ObjectStore, key: str, max_bytes: int, ttl_seconds: int) -> Inline | Link:
    """The object's bytes if it is at most `max_bytes`, else a short-lived link to it.

    Functions' Python HTTP responses are buffered whole (and copied again by the worker and
    the host), so large bodies must never pass through the function: above the cap the
    caller is sent to the cloud. The size comes from the response that streams the body,
    so the check and the bytes served cannot disagree; the stream is closed unread above it.
    A store that downloads a first range when it opens (Azure: up to 4 MiB) is asked for the
    size first, so a redirect costs no body bytes there either.
    """
    if store.reads_ahead_on_open and store.stat(validate_key(key)).size > max_bytes:
        return short_lived_link(store, key, ttl_seconds, known_to_exist=True)
    with open_object(store, key) as reader:
        if reader.info.size <= max_bytes:
            return Inline(reader.info, read_all(reader))
    return short_lived_link(store, key, ttl_seconds, known_to_exist=True)
