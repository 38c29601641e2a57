"""The combined listing: both clouds listed concurrently, merged by (key, source), paged.

Each cloud is read from its cursor position a page at a time (the next page prefetched
while the current one is merged), the sorted feeds are merged until `limit` objects are
taken, and the cursor records, per cloud, the position after the last object it
contributed, so no cloud is listed much further than the page needs. Over an
unchanged data set every object is returned exactly once. A cloud that fails fails the
whole request: a partial list is never passed off as complete.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
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


# Pages of this size keep what a resumed listing reads twice (the rest of a partly
# returned page) small, at a small cost in round trips (measured in docs/benchmarks.md).
FEED_PAGE_SIZE = 1000


def _pages(store: ObjectStore, prefix: str, start: cursors.Position,
           page_size: int) -> Iterator[tuple[list[Entry], bool]]:
    """One cloud's entries from `start`, page by page, with whether more pages follow."""
    if start.done:
        return
    token, skip_through = start.token, start.after
    for page in store.list_pages(prefix, token, page_size, start_after=skip_through):
        entries = [Entry(store.name, info, cursors.Position(token, info.key)) for info in page.items
                   if skip_through is None or info.key > skip_through]
        yield entries, page.next_token is not None
        token, skip_through = page.next_token, None
        if token is None:
            return


class _Feed:
    """One cloud's sorted entries, fetched a page at a time, the next page prefetched.

    A page is prefetched only when it can be needed soon: this cloud's buffer ends at or
    before every other cloud's (so the merge drains it first) and what is buffered cannot
    fill the rest of the response (`wanted()`). Reading pages that are never returned
    costs the other cloud's requests time and CPU.
    """

    def __init__(self, pages: Iterator[tuple[list[Entry], bool]], pool: ThreadPoolExecutor,
                 wanted: Callable[[], int], lagging: Callable[[_Feed], bool]):
        self._pages = pages
        self._pool = pool
        self._wanted = wanted
        self._lagging = lagging
        self._next: Future[tuple[list[Entry], bool] | None] | None = pool.submit(next, pages, None)
        self._buffer: deque[Entry] = deque()
        self._more_pages = True
        self.exhausted = False

    def frontier(self) -> tuple[bytes, str] | None:
        """The order of the last buffered entry (None: nothing buffered)."""
        return _order(self._buffer[-1]) if self._buffer else None

    def peek(self) -> Entry | None:
        while not self._buffer and not self.exhausted:
            if self._next is None:
                self._next = self._pool.submit(next, self._pages, None)
            fetched = self._next.result()  # a failed cloud fails the whole page: re-raised here
            self._next = None
            if fetched is None:
                self.exhausted = True
            else:
                entries, self._more_pages = fetched
                self._buffer.extend(entries)
                self.exhausted = not self._more_pages and not entries
        if (self._next is None and self._more_pages and not self.exhausted
                and len(self._buffer) < self._wanted() and self._lagging(self)):
            self._next = self._pool.submit(next, self._pages, None)
        return self._buffer[0] if self._buffer else None

    def pop(self) -> Entry:
        """The head entry; `exhausted` turns true with the last one (no fetch to wait for)."""
        entry = self._buffer.popleft()
        if not self._buffer and not self._more_pages:
            self.exhausted = True
        return entry


def _order(entry: Entry) -> tuple[bytes, str]:
    return entry.info.key.encode("utf-8"), entry.source


def list_objects(stores: Mapping[str, ObjectStore], *, source: str = "all", prefix: str = "",
                 limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> ListingPage:
    """One page of the combined listing. `stores` holds the store of each selected source."""
    names = tuple(stores)
    if cursor:
        positions = cursors.decode(cursor, source=source, prefix=prefix, sources=names).positions
    else:
        positions = {name: cursors.Position() for name in names}
    # One thread per cloud: a feed has at most one page fetch in flight.
    pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="listing")
    try:
        items: list[Entry] = []
        feeds: dict[str, _Feed] = {}

        def lagging(feed: _Feed) -> bool:
            """True when the merge will drain `feed` before the others (unknown: not yet)."""
            mine = feed.frontier()
            others = [f.frontier() for f in feeds.values() if f is not feed and not f.exhausted]
            return mine is not None and all(other is not None and mine <= other for other in others)

        for name in names:
            page_size = min(FEED_PAGE_SIZE, stores[name].max_page_size, limit)
            feeds[name] = _Feed(_pages(stores[name], prefix, positions[name], page_size), pool,
                                wanted=lambda: limit - len(items), lagging=lagging)
        while len(items) < limit:
            heads = [(feed_entry, name) for name, feed in feeds.items() if (feed_entry := feed.peek())]
            if not heads:
                break
            _, name = min(heads, key=lambda h: _order(h[0]))
            items.append(feeds[name].pop())
        next_positions = dict(positions)
        for name, feed in feeds.items():
            taken = [e for e in items if e.source == name]
            if taken:
                next_positions[name] = taken[-1].resume
            if feed.exhausted:
                next_positions[name] = cursors.Position(done=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    more = any(not p.done for p in next_positions.values())
    next_cursor = cursors.encode(cursors.Cursor(source, prefix, next_positions)) if more else None
    return ListingPage(items, next_cursor)
