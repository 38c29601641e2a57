"""Walks a sorted listing in step with the source's listing, so memory never holds either whole.

The planner looks up each source key, in the source's order, in a stream sorted in another
store's order. Azure lists in UTF-16 code-unit order, S3 in UTF-8 byte order (code-point
order); the two differ only where, at the first differing character, one key has a
character above U+FFFF and the other one in U+E000-U+FFFF. So an entry the walk passes over
can be wanted later only if it holds such a character ("astral-sensitive"); those few are
kept aside, everything else passed over is dropped. Memory: the stream's current page plus
the astral-sensitive keys passed over, however many objects there are.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
SortKey = Callable[[str], object]


def astral_sensitive(key: str) -> bool:
    """Whether UTF-8 and UTF-16 orders may place `key` differently against some other key."""
    return any(ord(ch) >= 0xE000 for ch in key)


class InOrderLookup(Generic[T]):
    """Looks up keys arriving in ascending source order in `entries`, sorted by `order`.

    `passed(key, value)` is told about every entry walked past without a match (the caller
    decides whether it is stale or must be kept).
    """

    def __init__(self, entries: Iterator[tuple[str, T]], order: SortKey,
                 passed: Callable[[str, T], None] | None = None):
        self._entries = entries
        self._order = order
        self._passed = passed
        self._head: tuple[str, T] | None = None
        self._exhausted = False
        self._aside: dict[str, T] = {}
        self._advance()

    def _advance(self) -> None:
        self._head = next(self._entries, None)
        self._exhausted = self._head is None

    def find(self, key: str) -> T | None:
        """The entry for `key`, or None if the stream has none."""
        if key in self._aside:
            return self._aside.pop(key)
        wanted = self._order(key)
        while self._head is not None and self._order(self._head[0]) < wanted:  # type: ignore[operator]
            head_key, value = self._head
            if astral_sensitive(head_key):
                self._aside[head_key] = value  # a later source key may still be this one
            elif self._passed is not None:
                self._passed(head_key, value)
            self._advance()
        if self._head is not None and self._head[0] == key:
            _, value = self._head
            self._advance()
            return value
        return None

    def close(self) -> None:
        """Close the stream (ending its prefetch thread, its downloads) without reading the rest."""
        self._head, self._exhausted = None, True
        close = getattr(self._entries, "close", None)
        if close is not None:
            close()

    def rest(self) -> Iterator[tuple[str, T]]:
        """Every entry not found so far (kept aside or not yet reached)."""
        yield from self._aside.items()
        self._aside = {}
        while self._head is not None:
            yield self._head
            self._advance()


_END = object()


def started(items: Iterator[T], pool: Executor) -> Iterator[T]:
    """`items` with the first one already being fetched on `pool` (the run's first listing
    page while the lease is taken); errors are raised where the item would have been."""
    first = pool.submit(next, items, _END)

    def rest() -> Iterator[T]:
        item = first.result()
        if item is _END:
            return
        yield item  # type: ignore[misc]
        yield from items

    return rest()


class Prefetch(Generic[T]):
    """`items`, fetched up to `depth` ahead on a thread of its own (listing pages while the
    source is compared); errors are raised where the item would have been.

    `close()` (or leaving a `with` block) ends the thread at once: a run that stops early
    must not keep a listing thread alive until the run is garbage-collected. The thread
    finishes the request it is in, never starts another, and closes `items`.
    """

    def __init__(self, items: Iterator[T], depth: int = 2):
        self._ahead: queue.Queue[object] = queue.Queue(depth)
        self._stop = threading.Event()
        self._done = False
        # The thread holds no reference to self, so an unclosed Prefetch still stops when collected.
        self.thread = threading.Thread(target=_fill, args=(items, self._ahead, self._stop),
                                       name="listing-prefetch", daemon=True)
        weakref.finalize(self, self._stop.set)
        self.thread.start()

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._ahead.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item  # type: ignore[return-value]

    def close(self, wait_s: float = 1.0) -> None:
        """Stop fetching and wait (at most `wait_s`: a request in flight may be slow) for the thread."""
        self._done = True
        self._stop.set()
        while True:  # free a put the thread may be blocked in
            try:
                self._ahead.get_nowait()
            except queue.Empty:
                break
        if self.thread is not threading.current_thread():
            self.thread.join(wait_s)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fill(items: Iterator[object], ahead: queue.Queue[object], stop: threading.Event) -> None:
    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone: stop fetching

    try:
        for item in items:
            if not offer(item) or stop.is_set():
                return
        offer(_END)
    except BaseException as exc:  # handed to the consumer, raised where the item would be
        offer(exc)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def prefetch(items: Iterator[T], depth: int = 2) -> Prefetch[T]:
    """`items` fetched ahead on a thread (`Prefetch`); use it in a `with` block."""
    return Prefetch(items, depth)
