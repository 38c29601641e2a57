"""A run that stops early ends its destination-listing prefetch thread at once, not at GC.

Each test keeps the run (and so its planner and walks) referenced after it returned, the
way a host keeps objects around: the thread must be gone because the run closed it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from crosscloud.backup.restore import Restore, RestoreRequest
from crosscloud.backup.run import Backup
from crosscloud.backup.walk import prefetch
from tests.unit.test_backup import CONFIG, FakeStore

STOPS_AT_ONCE = replace(CONFIG, time_budget_s=0)  # the first object listed already finds the budget spent


def listing_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "listing-prefetch" and t not in before and t.is_alive()]


def store_with(name: str, keys: list[str]) -> FakeStore:
    store = FakeStore(name, page_size=2)  # many pages: the prefetch thread always has more to fetch
    for key in keys:
        store.seed(key, key.encode())
    return store


def test_closing_a_prefetch_ends_its_thread_and_closes_the_listing():
    closed = threading.Event()

    def pages() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    walk = prefetch(pages())
    assert next(walk) == 0
    walk.close()
    assert not walk.thread.is_alive()
    assert closed.is_set()
    assert list(walk) == []  # a closed walk yields nothing more


def test_a_prefetch_raises_the_listing_error_where_the_page_would_be():
    def pages() -> Iterator[int]:
        yield 1
        raise RuntimeError("listing failed")

    with prefetch(pages()) as walk:
        assert next(walk) == 1
        with pytest.raises(RuntimeError, match="listing failed"):
            next(walk)
    assert not walk.thread.is_alive()


def test_a_backup_that_stops_early_leaves_no_listing_thread_behind():
    before = set(threading.enumerate())
    src = store_with("azure", [f"k{i:03d}" for i in range(40)])
    dst = store_with("s3", [f"bk/k{i:03d}" for i in range(40)])
    run = Backup(src, dst, STOPS_AT_ONCE)
    report = run.run()
    assert "time budget" in (report.stop_reason or "")
    assert listing_threads(before) == []
    assert run.planner is not None  # still referenced: the thread ended because it was closed


def test_a_restore_that_stops_early_leaves_no_listing_thread_behind():
    before = set(threading.enumerate())
    backup = store_with("s3", [f"bk/k{i:03d}" for i in range(40)])
    container = store_with("azure", [f"k{i:03d}" for i in range(40)])
    run = Restore(backup, container, STOPS_AT_ONCE, RestoreRequest())
    report = run.run()
    assert "time budget" in (report.stop_reason or "")
    assert listing_threads(before) == []
    assert run.planner is not None
