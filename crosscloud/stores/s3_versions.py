"""A read-only view of an S3 bucket as it was at one moment, from its object versions.

For each key under the listed prefix the view shows the version that was current at
`as_of`: the newest entry (version or delete marker) whose LastModified is not after it.
A delete marker there, or no entry that old, means the key did not exist then. Listing
uses ListObjectVersions through botocore's paginator; a key's versions may straddle pages,
so the last key of a truncated page is decided with the next page. `stat` and `open` read
exactly the chosen VersionId, so the bytes cannot change under a restore.

S3 records LastModified to the second in listings, so the moment resolves to whole
seconds: a version written within the same second as `as_of` counts as current then.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, BinaryIO

from crosscloud.errors import NotFound, UpstreamError
from crosscloud.stores.base import ObjectInfo, ObjectReader, ObjectStore, Page, PutOptions, PutResult
from crosscloud.stores.s3 import CHUNK, S3Store

REMEMBERED = 20_000  # versions kept for keys listed recently (far more than a run has in flight)

Entry = dict[str, Any]  # one element of Versions or DeleteMarkers, plus "_marker"


def current_at(entries: list[Entry], as_of: dt.datetime) -> Entry | None:
    """The entry current at `as_of` among one key's entries, or None if the key was absent.

    Ties within a second (S3's resolution): the entry S3 marks IsLatest, then a version
    over a delete marker, then the one listed first (S3 lists newest first).
    """
    candidates = [(i, e) for i, e in enumerate(entries) if e["LastModified"] <= as_of]
    if not candidates:
        return None
    _, chosen = max(candidates, key=lambda ie: (ie[1]["LastModified"], bool(ie[1].get("IsLatest")),
                                                not ie[1]["_marker"], -ie[0]))
    return None if chosen["_marker"] else chosen


class VersionedView(ObjectStore):
    """`store`'s bucket as of `as_of` (read-only: `put` and `link` are refused)."""

    name = "s3"
    max_page_size = 1000

    def __init__(self, store: S3Store, as_of: dt.datetime):
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        self.store, self.as_of = store, as_of.astimezone(dt.UTC)
        # key -> VersionId chosen by the listing, for the most recent keys only: memory must not
        # grow with the backup; an older key is looked up again (`version_of`).
        self._versions: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.store.describe()} as of {self.as_of.isoformat().replace('+00:00', 'Z')}"

    def _entries(self, page: dict[str, Any]) -> list[Entry]:
        entries = [{**v, "_marker": False} for v in page.get("Versions", [])]
        entries += [{**m, "_marker": True} for m in page.get("DeleteMarkers", [])]
        return sorted(entries, key=lambda e: e["Key"])  # stable: each list stays newest first

    def _pages(self, prefix: str, page_size: int | None) -> Iterator[tuple[list[Entry], bool]]:
        client, bucket = self.store.client, self.store.bucket
        pages = iter(client.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": min(page_size or 1000, 1000)}))
        while True:
            with self.store._errors("list versions"):  # noqa: SLF001 - the store's own error mapping
                page = next(pages, None)
            if page is None:
                return
            yield self._entries(page), bool(page.get("IsTruncated"))

    def list_pages(self, prefix: str = "", page_size: int | None = None,
                   start_after: str | None = None) -> Iterator[Page]:
        if start_after:
            raise ValueError("a versioned view lists from the start of the prefix")
        carried: list[Entry] = []  # the last key of the previous page: more versions may follow
        for entries, truncated in self._pages(prefix, page_size):
            entries = carried + entries
            cut = len(entries)
            if truncated and entries:
                last = entries[-1]["Key"]
                while cut and entries[cut - 1]["Key"] == last:
                    cut -= 1
            ready, carried = entries[:cut], entries[cut:]
            yield Page(self._resolve(ready), "more" if truncated else None)
        if carried:
            yield Page(self._resolve(carried), None)

    def _resolve(self, entries: list[Entry]) -> list[ObjectInfo]:
        items: list[ObjectInfo] = []
        start = 0
        while start < len(entries):
            end = start
            while end < len(entries) and entries[end]["Key"] == entries[start]["Key"]:
                end += 1
            chosen = current_at(entries[start:end], self.as_of)
            if chosen is not None:
                items.append(ObjectInfo(key=chosen["Key"], size=int(chosen["Size"]),
                                        last_modified=chosen["LastModified"].astimezone(dt.UTC),
                                        etag=chosen.get("ETag", "").strip('"')))
                with self._lock:
                    self._versions[chosen["Key"]] = chosen["VersionId"]
                    if len(self._versions) > REMEMBERED:
                        self._versions.popitem(last=False)
            start = end
        return items

    def version_of(self, key: str) -> str:
        """The VersionId current at `as_of` (listed before, or looked up); NotFound if none."""
        with self._lock:
            version = self._versions.get(key)
        if version is None:
            for page in self.list_pages(key):
                for info in page.items:
                    if info.key == key:
                        with self._lock:
                            return self._versions[key]  # just listed: the most recent entry
            raise NotFound(f"no S3 object named {key!r} in bucket {self.store.bucket} as of {self.as_of}")
        return version

    def stat(self, key: str) -> ObjectInfo:
        version = self.version_of(key)
        with self.store._errors("stat", key):  # noqa: SLF001
            head = self.store.client.head_object(Bucket=self.store.bucket, Key=key, VersionId=version)
        return self.store._info(key, head)  # noqa: SLF001

    def open(self, key: str) -> ObjectReader:
        version = self.version_of(key)
        with self.store._errors("read", key):  # noqa: SLF001
            response = self.store.client.get_object(Bucket=self.store.bucket, Key=key, VersionId=version)
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            with self.store._errors("read", key):  # noqa: SLF001
                yield from body.iter_chunks(CHUNK)

        return ObjectReader(self.store._info(key, response), chunks(), body.close)  # noqa: SLF001

    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        raise UpstreamError("a point-in-time view of the backup is read-only", code="read_only", status=500)

    def link(self, key: str, ttl_seconds: int) -> str:
        raise UpstreamError("a point-in-time view of the backup has no links", code="read_only", status=500)
