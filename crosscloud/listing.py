"""The combined listing: both clouds listed concurrently, merged by (key, source), paged.

Each cloud is read from its cursor position up to `limit + 1` objects (one extra tells
whether more follow), the two sorted runs are merged, the first `limit` returned, and the
cursor records, per cloud, the position after the last object it contributed. Over an
unchanged data set every object is returned exactly once. A cloud that fails fails the
whole request: a partial list is never passed off as complete.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from crosscloud import cursor as cursors
from crosscloud.errors import BadRequest
from crosscloud.stores.base import ObjectInfo, ObjectStore

DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
SOURCES = ("azure", "s3")


@dataclass(frozen=True)
class Entry:
    source: str
    info: ObjectInfo
    resume: cursors.Position  # where this cloud resumes after this entry

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "key": self.info.key,
            "size": self.info.size,
            "last_modified": self.info.last_modified.isoformat().replace("+00:00", "Z"),
            "etag": self.info.etag,
        }


@dataclass(frozen=True)
class ListingPage:
    items: list[Entry]
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        return {"items": [e.as_json() for e in self.items], "next_cursor": self.next_cursor}


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw[:40]!r}",
                         code="invalid_limit") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_LIMIT}, got {value}", code="invalid_limit")
    return value


def parse_source(raw: str | None) -> tuple[str, ...]:
    value = (raw or "all").lower()
    if value == "all":
        return SOURCES
    if value in SOURCES:
        return (value,)
    raise BadRequest(f"source must be one of all, azure, s3; got {raw[:40]!r}", code="invalid_source")


def parse_prefix(raw: str | None) -> str:
    value = raw or ""
    if len(value.encode()) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadRequest("prefix must be at most 1024 bytes without control characters",
                         code="invalid_prefix")
    return value


def _run(store: ObjectStore, prefix: str, start: cursors.Position, want: int) -> list[Entry]:
    """Up to `want` entries of one cloud from `start`, each with its resume position."""
    if start.done:
        return []
    entries: list[Entry] = []
    token, skip_through = start.token, start.after
    page_size = min(store.max_page_size, max(want, 100))
    for page in store.list_pages(prefix, token, page_size):
        for info in page.items:
            if skip_through is not None and info.key <= skip_through:
                continue
            entries.append(Entry(store.name, info, cursors.Position(token, info.key)))
            if len(entries) >= want:
                return entries
        token, skip_through = page.next_token, None
        if token is None:
            break
    return entries


def list_objects(stores: Mapping[str, ObjectStore], *, source: str = "all", prefix: str = "",
                 limit: int = DEFAULT_LIMIT, cursor: str | None = None,
                 pool: ThreadPoolExecutor | None = None) -> ListingPage:
    """One page of the combined listing. `stores` holds the store of each selected source."""
    names = tuple(stores)
    if cursor:
        positions = cursors.decode(cursor, source=source, prefix=prefix, sources=names).positions
    else:
        positions = {name: cursors.Position() for name in names}
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="listing")
    try:
        futures = {name: pool.submit(_run, stores[name], prefix, positions[name], limit + 1)
                   for name in names}
        runs = {name: future.result() for name, future in futures.items()}  # re-raises a failure
    finally:
        if own_pool:
            pool.shutdown(wait=False, cancel_futures=True)
    merged: Iterator[Entry] = heapq.merge(
        *runs.values(), key=lambda e: (e.info.key.encode("utf-8"), e.source))
    page = list(itertools.islice(merged, limit))
    next_positions = dict(positions)
    for name, run in runs.items():
        taken = [e for e in page if e.source == name]
        if taken:
            next_positions[name] = taken[-1].resume
        if len(taken) == len(run) and len(run) <= limit:
            # Everything this cloud had from its position was returned and it has no more.
            next_positions[name] = cursors.Position(done=True)
    more = any(not p.done for p in next_positions.values())
    next_cursor = cursors.encode(cursors.Cursor(source, prefix, next_positions)) if more else None
    return ListingPage(page, next_cursor)
