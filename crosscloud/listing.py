"""The combined listing: both clouds listed concurrently, merged, paged.

Each cloud lists in its own service's order (S3: UTF-8 bytes; Azure: UTF-16 code units;
they differ only where a character above U+FFFF meets one in U+E000-U+FFFF at the same
position). Each is read from its cursor position a page at a time (the next page
prefetched while the current one is merged), and the two feeds are merged by always
taking the head that comes first by (key as UTF-8 bytes, source): on equal keys Azure's
first. The cursor records, per cloud, the last key it returned (or an equivalent one).

Exactly once, for any Unicode: what a page takes from a cloud is the next run of that
cloud's own sequence, and the cloud resumes after the last key of that run in its own
order, which is the rest of its sequence. The merge's choice depends only on the two
heads, which the cursor restores, so the pages joined are the one merge of the two whole
sequences, whatever the page size. That merge is the order documented in docs/listing.md:
sorted by (key, source) wherever the two orders agree.

A cloud that fails fails the whole request: a partial list is never passed off as complete.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from crosscloud import cursor as cursors
from crosscloud.errors import BadRequest
from crosscloud.stores.base import ObjectInfo, ObjectStore, StartRefused

DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
SOURCES = ("azure", "s3")


@dataclass(frozen=True)
class Entry:
    source: str
    info: ObjectInfo

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
    """ASCII digits only: `int()` would also take other scripts' digits, signs, spaces, `_`."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT} in ASCII digits, "
                         f"got {raw[:40]!r}", code="invalid_limit")
    value = int(raw)
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
    try:
        for page in store.list_pages(prefix, page_size, start_after=start.after):
            yield [Entry(store.name, info) for info in page.items], page.next_token is not None
            if page.next_token is None:
                return
    except StartRefused as exc:  # only a cursor can start a listing elsewhere than the start
        raise cursors.invalid(f"the {store.name} position was refused: {exc.message}") from None


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

    def head(self) -> Entry | None:
        """The next entry if it is already buffered (never fetches)."""
        return self._buffer[0] if self._buffer else None

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
    """The merge's comparison of two heads: key as UTF-8 bytes, then source."""
    return entry.info.key.encode("utf-8", "surrogatepass"), entry.source


def _resume_at(store: ObjectStore, returned: str | None, head: Entry | None,
               last: str) -> str | None:
    """Where `store` resumes: after the last key it returned, or after the page's last key
    `last` (from either cloud) when that splits this cloud's keys the same way, in its own
    order: nothing returned after `last`, nothing left before it. Both clouds then share
    one key in the cursor."""
    if head is None:
        return returned
    order = store.sort_key
    if (returned is None or order(returned) <= order(last)) and order(last) < order(head.info.key):
        return last
    return returned


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
            if feed.exhausted:
                next_positions[name] = cursors.Position(done=True)
                continue
            taken = [e for e in items if e.source == name]
            returned = taken[-1].info.key if taken else positions[name].after
            if items:
                returned = _resume_at(stores[name], returned, feed.head(), items[-1].info.key)
            next_positions[name] = cursors.Position(after=returned)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    more = any(not p.done for p in next_positions.values())
    next_cursor = cursors.encode(cursors.Cursor(source, prefix, next_positions)) if more else None
    return ListingPage(items, next_cursor)
