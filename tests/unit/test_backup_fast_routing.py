"""The engine's side of the fast path: which copies take the lean paths, and the listing
overlapping the lease (fake stores: the stores' own lean paths are tested against devstack)."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from crosscloud.backup.lease import LEASE_NAME
from crosscloud.backup.run import Backup
from crosscloud.stores.base import ObjectReader, PutOptions
from tests.unit.test_backup import CONFIG, MIB, FakeStore, data_keys


class LeanSource(FakeStore):
    def __init__(self) -> None:
        super().__init__("azure")
        self.lean: list[tuple[str, int]] = []

    def open_small(self, key: str, limit: int) -> ObjectReader | None:
        self.lean.append((key, limit))
        return self.open(key)


class RecordingDest(FakeStore):
    def __init__(self) -> None:
        super().__init__("s3")
        self.options: dict[str, PutOptions] = {}

    def put(self, key: str, stream: Any, size: int, options: PutOptions) -> Any:
        self.options[key] = options
        return super().put(key, stream, size, options)


def test_objects_up_to_the_limit_below_the_part_size_take_the_lean_paths():
    src, dst = LeanSource(), RecordingDest()
    src.seed("small", b"s" * 10)
    src.seed("limit", b"l" * 20)
    src.seed("above", b"a" * 21)
    report = Backup(src, dst, replace(CONFIG, fast_path_bytes=20)).run()  # type: ignore[arg-type]
    assert (report.copied, report.failed_count) == (3, 0)
    assert sorted(src.lean) == [("limit", 20), ("small", 20)]
    assert {k: o.lean for k, o in dst.options.items() if k in data_keys(dst)} == {
        "bk/small": True, "bk/limit": True, "bk/above": False}


def test_single_request_objects_only_whatever_the_setting():
    src, dst = LeanSource(), RecordingDest()
    src.seed("below-part", b"b" * (5 * MIB - 1))
    src.seed("one-part", b"p" * (5 * MIB))  # the part size: a multipart upload
    report = Backup(src, dst, replace(CONFIG, fast_path_bytes=8 * MIB)).run()  # type: ignore[arg-type]
    assert (report.copied, report.failed_count) == (2, 0)
    assert src.lean == [("below-part", 5 * MIB - 1)]
    assert (dst.options["bk/below-part"].lean, dst.options["bk/one-part"].lean) == (True, False)


def test_fast_path_off_means_no_lean_request_not_even_for_empty_objects():
    src, dst = LeanSource(), RecordingDest()
    src.seed("empty", b"")
    report = Backup(src, dst, replace(CONFIG, fast_path_bytes=0)).run()  # type: ignore[arg-type]
    assert report.copied == 1
    assert src.lean == []
    assert not dst.options["bk/empty"].lean


def test_the_source_listing_starts_while_the_lease_is_taken():
    """The first page is requested before the lease write returns (here: the lease write waits
    for the listing; run one after the other, it would time out and fail)."""
    listing_started = threading.Event()

    class Source(FakeStore):
        def list_pages(self, *args: Any, **kwargs: Any) -> Any:
            listing_started.set()
            yield from super().list_pages(*args, **kwargs)

    class Dest(FakeStore):
        def put(self, key: str, stream: Any, size: int, options: PutOptions) -> Any:
            if key.endswith(LEASE_NAME) and not listing_started.is_set():
                assert listing_started.wait(5), "the source was not listed while the lease was taken"
            return super().put(key, stream, size, options)

    src, dst = Source("azure"), Dest("s3")
    src.seed("a", b"a")
    report = Backup(src, dst, CONFIG).run()  # type: ignore[arg-type]
    assert (report.copied, report.failed_count) == (1, 0)
