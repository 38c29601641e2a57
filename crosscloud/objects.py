"""Reading one object: key validation, the inline size cap, and short-lived links."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from crosscloud.errors import BadRequest, TooLarge
from crosscloud.stores.base import MAX_KEY_BYTES, ObjectReader, ObjectStore


def validate_key(key: str | None) -> str:
    """A key both clouds can hold: non-empty, at most 1,024 UTF-8 bytes, no control characters."""
    if not key:
        raise BadRequest("object key is empty", code="invalid_key")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise BadRequest("object key contains control characters", code="invalid_key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BadRequest(f"object key is longer than {MAX_KEY_BYTES} UTF-8 bytes", code="invalid_key")
    return key


def open_bounded(store: ObjectStore, key: str, max_bytes: int) -> ObjectReader:
    """Open an object for an inline response; `TooLarge` (413) above `max_bytes`.

    The size comes from the same response that streams the body, so the check and the
    bytes served cannot disagree.
    """
    reader = store.open(validate_key(key))
    if reader.info.size > max_bytes:
        reader.close()
        raise TooLarge(
            f"object is {reader.info.size} bytes, above the inline limit of {max_bytes} bytes "
            "(DOWNLOAD_MAX_BYTES); ask for a download link with ?link=true",
            code="too_large")
    return reader


@dataclass(frozen=True)
class Link:
    url: str
    expires_at: dt.datetime

    def as_json(self) -> dict[str, str]:
        return {"url": self.url, "expires_at": self.expires_at.isoformat().replace("+00:00", "Z")}


def short_lived_link(store: ObjectStore, key: str, ttl_seconds: int) -> Link:
    """A read-only URL valid for `ttl_seconds` (S3 presigned / Azure user delegation SAS)."""
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=ttl_seconds)
    return Link(store.link(validate_key(key), ttl_seconds), expires)
