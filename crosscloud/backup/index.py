"""The backup index: what each destination object is a copy of, so reruns need no HEADs.

S3 listings carry size and ETag but not user metadata, so telling "unchanged" from the
listings alone needs one more fact per object: which source version the bytes behind a
destination ETag came from. The index (`<prefix>.crosscloud/index.jsonl.gz`, gzip JSON
lines `[key, dest_etag, source_etag]`) records that fact for every copy this engine made or
checked. It is a cache, never the truth: an entry is used only while the destination
listing still shows the same ETag (same bytes), otherwise the run falls back to a HEAD of
the object's `crosscloud-source-etag` metadata. A lost or stale index costs HEADs, not
correctness. Only the lease holder writes it, at the end of a run.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
from collections.abc import Iterable
from typing import Any, BinaryIO, cast

from crosscloud.errors import CrossCloudError, NotFound
from crosscloud.stores.base import ObjectStore, PutOptions

log = logging.getLogger("crosscloud.backup")
INDEX_NAME = ".crosscloud/index.jsonl.gz"
VERSION = 1


def load(store: ObjectStore, key: str) -> dict[str, tuple[str, str]]:
    """key (relative to the prefix) -> (destination ETag, source ETag); empty if unreadable."""
    entries: dict[str, tuple[str, str]] = {}
    try:
        with store.open(key) as reader, gzip.GzipFile(fileobj=cast(BinaryIO, reader)) as lines:
            header = json.loads(lines.readline() or b"{}")
            if header.get("version") != VERSION:
                return {}
            for line in lines:
                relative, dest_etag, source_etag = json.loads(line)
                entries[relative] = (dest_etag, source_etag)
    except NotFound:
        return {}
    except (CrossCloudError, OSError, EOFError, ValueError, TypeError) as exc:
        # A damaged index only costs HEADs; say so and carry on without it.
        log.warning("backup index %s unusable (%s); checking objects with HEAD instead", key,
                    exc.message if isinstance(exc, CrossCloudError) else type(exc).__name__)
        return {}
    return entries


def save(store: ObjectStore, key: str, entries: Iterable[tuple[str, str, str]], meta: dict[str, Any],
         part_size: int) -> None:
    """Write the index (spooled to disk above 8 MiB, so memory stays bounded)."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        with gzip.GzipFile(fileobj=spool, mode="wb", compresslevel=5) as out:
            out.write(json.dumps({"version": VERSION, **meta}).encode() + b"\n")
            for entry in entries:
                out.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        size = spool.tell()
        spool.seek(0)
        store.put(key, cast(BinaryIO, spool), size,
                  PutOptions(content_type="application/gzip", part_size=part_size,
                             multipart_threshold=part_size))
