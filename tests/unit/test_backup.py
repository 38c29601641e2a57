"""The backup engine and the run lease over an in-memory store (the clouds: tests/integration).

`FakeStore` keeps content type and metadata, gives every write a new ETag, honours
conditional puts, reports a SHA-256 like S3, and counts calls, so the engine's decisions
(copy, skip, HEAD or not) can be asserted.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

import pytest

from crosscloud.backup import index
from crosscloud.backup.config import BackupConfig, MemoryBudget
from crosscloud.backup.lease import LEASE_NAME, Lease, LeaseHeld
from crosscloud.backup.metadata import SOURCE_ETAG, UNVERIFIED
from crosscloud.backup.report import BackupReport
from crosscloud.backup.run import Backup
from crosscloud.errors import NotFound, PreconditionFailed, SettingError, UpstreamError
from crosscloud.settings import Settings
from crosscloud.stores.base import ObjectInfo, ObjectReader, ObjectStore, Page, PutOptions, PutResult

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_etags = itertools.count(1)


@dataclass
class Blob:
    data: bytes
    etag: str
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    md5: bytes | None = None


class FakeStore(ObjectStore):
    supports_conditional_put = True

    def __init__(self, name: str = "fake", page_size: int = 4, with_md5: bool = True):
        self.name = name
        self.max_page_size = page_size
        self.blobs: dict[str, Blob] = {}
        self.calls: Counter[str] = Counter()
        self.with_md5 = with_md5
        self.put_hook: Callable[[str], None] | None = None  # raise from it to inject a fault
        self.corrupt: Callable[[str, bytes], bytes] | None = None  # what the "service" stores

    # --- seeding (as an admin would) ---------------------------------------------
    def seed(self, key: str, data: bytes, *, content_type: str = "application/octet-stream",
             metadata: dict[str, str] | None = None) -> Blob:
        blob = Blob(data, f"0x{next(_etags):X}", content_type, dict(metadata or {}),
                    hashlib.md5(data, usedforsecurity=False).digest() if self.with_md5 else None)
        self.blobs[key] = blob
        return blob

    # --- ObjectStore -------------------------------------------------------------
    def _info(self, key: str, blob: Blob, with_metadata: bool = True) -> ObjectInfo:
        return ObjectInfo(key, len(blob.data), EPOCH, blob.etag, blob.content_type, blob.md5,
                          dict(blob.metadata) if with_metadata else None)

    def list_pages(self, prefix: str = "", page_size: int | None = None,
                   start_after: str | None = None) -> Iterator[Page]:
        self.calls["list"] += 1
        keys = sorted((k for k in self.blobs if k.startswith(prefix)), key=lambda k: k.encode())
        keys = [k for k in keys if start_after is None or k.encode() > start_after.encode()]
        for start in range(0, len(keys), self.max_page_size):
            chunk = keys[start:start + self.max_page_size]
            more = start + self.max_page_size < len(keys)
            yield Page([self._info(k, self.blobs[k], with_metadata=False) for k in chunk], "t" if more else None)

    def stat(self, key: str) -> ObjectInfo:
        self.calls["stat"] += 1
        if key not in self.blobs:
            raise NotFound(key)
        return self._info(key, self.blobs[key])

    def open(self, key: str) -> ObjectReader:
        self.calls["open"] += 1
        if key not in self.blobs:
            raise NotFound(key)
        blob = self.blobs[key]
        data = blob.data
        return ObjectReader(self._info(key, blob), iter([data[i:i + 3] for i in range(0, len(data), 3)] or [b""]))

    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        self.calls["put"] += 1
        current = self.blobs.get(key)
        if options.if_none_match and current is not None:
            raise PreconditionFailed(key)
        if options.if_match is not None and (current is None or current.etag != options.if_match):
            raise PreconditionFailed(key)
        if self.put_hook is not None:
            self.put_hook(key)
        data = stream.read()
        if len(data) != size:
            raise AssertionError(f"fake put: got {len(data)} bytes, declared {size}")
        stored = self.corrupt(key, data) if self.corrupt else data
        etag = f"d{next(_etags)}"
        self.blobs[key] = Blob(stored, etag, options.content_type, dict(options.metadata))
        checksum = base64.b64encode(hashlib.sha256(stored).digest()).decode()
        return PutResult(etag, checksum)

    def link(self, key: str, ttl_seconds: int) -> str:
        return f"fake://{key}"


# --- the engine -------------------------------------------------------------------------
MIB = 1024 * 1024
CONFIG = BackupConfig(prefix="bk/", part_size=5 * MIB, concurrency=3, part_concurrency=2, checkers=2,
                      retry_base_s=0.001, lease_ttl_s=30)
INDEX = "bk/" + index.INDEX_NAME


def run(src: FakeStore, dst: FakeStore, **changes: object) -> BackupReport:
    return Backup(src, dst, replace(CONFIG, **changes)).run()  # type: ignore[arg-type]


@pytest.fixture
def src() -> FakeStore:
    store = FakeStore("azure")
    store.seed("a.txt", b"alpha", content_type="text/plain", metadata={"Owner": "me"})
    store.seed("empty", b"")
    store.seed("dir/sub/b.bin", b"\x00" * 100)
    store.seed("uni ü #?%+.txt", b"x")
    return store


@pytest.fixture
def dst() -> FakeStore:
    return FakeStore("s3")


def data_keys(store: FakeStore) -> set[str]:
    return {k for k in store.blobs if not k.startswith("bk/.crosscloud/")}


def test_first_run_copies_everything_with_type_and_metadata(src, dst):
    report = run(src, dst)
    assert (report.copied, report.skipped, report.failed_count, report.complete) == (4, 0, 0, True)
    assert report.bytes_copied == 5 + 0 + 100 + 1
    assert data_keys(dst) == {"bk/a.txt", "bk/empty", "bk/dir/sub/b.bin", "bk/uni ü #?%+.txt"}
    copy = dst.blobs["bk/a.txt"]
    assert copy.data == b"alpha"
    assert copy.content_type == "text/plain"
    assert copy.metadata["owner"] == "me"
    assert copy.metadata[SOURCE_ETAG] == src.blobs["a.txt"].etag
    assert copy.metadata["crosscloud-source-last-modified"] == "2026-01-01T00:00:00.000Z"


def test_rerun_copies_nothing_and_sends_no_head(src, dst):
    run(src, dst)
    before = {k: dst.blobs[k].etag for k in data_keys(dst)}
    dst.calls.clear()
    report = run(src, dst)
    assert (report.copied, report.skipped, report.complete) == (0, 4, True)
    assert dst.calls["stat"] == 0  # the listing plus the index told
    assert {k: dst.blobs[k].etag for k in data_keys(dst)} == before


def test_changed_and_new_objects_are_the_only_copies(src, dst):
    run(src, dst)
    src.seed("a.txt", b"ALPHA")  # same size, new ETag
    src.seed("dir/sub/b.bin", b"\x01" * 101)  # new size
    src.seed("new.txt", b"new")
    dst.calls.clear()
    report = run(src, dst)
    assert (report.copied, report.skipped) == (3, 2)
    assert dst.calls["stat"] == 0
    assert dst.blobs["bk/a.txt"].data == b"ALPHA"
    assert dst.blobs["bk/new.txt"].metadata[SOURCE_ETAG] == src.blobs["new.txt"].etag


def test_without_the_index_same_size_objects_are_checked_with_head(src, dst):
    run(src, dst)
    del dst.blobs[INDEX]
    src.seed("a.txt", b"ALPHA")
    dst.calls.clear()
    report = run(src, dst)
    assert (report.copied, report.skipped) == (1, 3)
    assert dst.calls["stat"] == 4
    dst.calls.clear()
    assert run(src, dst).copied == 0
    assert dst.calls["stat"] == 0


def test_an_index_entry_for_a_replaced_destination_object_is_not_trusted(src, dst):
    run(src, dst)
    dst.seed("bk/a.txt", b"other")  # someone overwrote the copy: same size, new ETag, no metadata
    report = run(src, dst)
    assert (report.copied, report.skipped) == (1, 3)
    assert dst.blobs["bk/a.txt"].data == b"alpha"


def test_a_damaged_index_costs_heads_not_correctness(src, dst, caplog):
    run(src, dst)
    dst.seed(INDEX, b"not gzip")
    src.seed("a.txt", b"ALPHA")
    report = run(src, dst)
    assert (report.copied, report.skipped) == (1, 3)
    assert "index" in caplog.text
    assert "unusable" in caplog.text


def test_nothing_is_ever_deleted(src, dst):
    run(src, dst)
    del src.blobs["a.txt"]
    run(src, dst)
    assert "bk/a.txt" in dst.blobs


def test_reserved_and_overlong_names_are_reported_not_dropped(src, dst):
    src.seed(".crosscloud/lease", b"sneaky")
    src.seed("é" * 600, b"long")
    report = run(src, dst)
    reasons = {f.key: f.reason for f in report.failed}
    assert "reserved .crosscloud/ area" in reasons[".crosscloud/lease"]
    assert "1203 bytes in UTF-8; S3 allows at most 1024" in reasons["é" * 600]
    assert report.copied == 4
    assert report.failed_count == 2
    assert not report.complete  # a run with failures is never complete (issue 14)
    assert not report.ok
    assert dst.blobs["bk/.crosscloud/lease"].data != b"sneaky"


def test_a_failing_object_is_retried_and_never_stops_the_others(src, dst):
    attempts: dict[str, int] = {}

    def hook(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if key == "bk/a.txt" or (key == "bk/empty" and attempts[key] == 1):
            raise UpstreamError("S3 write failed: SlowDown", code="s3_error", status=503)

    dst.put_hook = hook
    report = run(src, dst)
    assert [(f.key, f.reason) for f in report.failed] == [("a.txt", "S3 write failed: SlowDown")]
    assert attempts["bk/a.txt"] == 3
    assert attempts["bk/empty"] == 2
    assert report.copied == 3
    assert not report.complete  # a failed object: not complete, though the run went to the end
    dst.put_hook = None
    report = run(src, dst)
    assert (report.copied, report.skipped, report.failed_count) == (1, 3, 0)


def test_a_refused_write_stops_the_run_instead_of_failing_every_object(src, dst):
    def hook(key: str) -> None:
        if not key.startswith("bk/.crosscloud/"):
            raise UpstreamError("S3 refused write: the role is not allowed to", code="s3_forbidden")

    dst.put_hook = hook
    report = run(src, dst, concurrency=1)
    assert report.failed_count == 1
    assert not report.complete
    assert report.stop_reason == "stopped: S3 refused write: the role is not allowed to"


def test_a_copy_the_destination_stored_wrong_is_retried_then_marked_unverified(src, dst):
    dst.corrupt = lambda key, data: data[::-1] + b"!" if key == "bk/a.txt" else data
    report = run(src, dst)
    (failure,) = report.failed
    assert failure.key == "a.txt"
    assert "differs from the bytes read" in failure.reason
    copy = dst.blobs["bk/a.txt"]
    assert SOURCE_ETAG not in copy.metadata
    assert UNVERIFIED in copy.metadata
    dst.corrupt = None
    report = run(src, dst)
    assert (report.copied, report.failed_count) == (1, 0)  # not taken as current
    assert dst.blobs["bk/a.txt"].data == b"alpha"


def test_bytes_that_do_not_match_the_source_md5_are_never_written(src, dst):
    src.blobs["a.txt"].md5 = b"\x00" * 16
    report = run(src, dst)
    assert [f.key for f in report.failed] == ["a.txt"]
    assert "Content-MD5" in report.failed[0].reason
    assert "bk/a.txt" not in dst.blobs


def test_a_blob_deleted_during_the_run_is_skipped(src, dst):
    real_open = src.open

    def vanish(key: str):  # noqa: ANN202
        if key == "a.txt":
            src.blobs.pop("a.txt", None)
        return real_open(key)

    src.open = vanish  # type: ignore[method-assign]
    report = run(src, dst)
    assert (report.copied, report.skipped, report.failed_count) == (3, 1, 0)


def test_time_budget_stops_scheduling_and_the_next_run_finishes(dst):
    src = FakeStore("azure")
    for i in range(20):
        src.seed(f"k{i:02d}", b"v")
    dst.put_hook = lambda key: time.sleep(0.03)
    first = run(src, dst, concurrency=1, time_budget_s=0.2)
    assert not first.complete
    assert first.stop_reason == "time budget of 0 s reached"
    assert 0 < first.copied < 20
    dst.put_hook = None
    second = run(src, dst)
    assert second.complete
    assert first.copied + second.copied == 20
    assert second.skipped == first.copied


def test_dry_run_writes_nothing_but_reports_what_it_would_copy(src, dst):
    report = Backup(src, dst, CONFIG, dry_run=True).run()
    assert report.dry_run
    assert report.copied == 4
    assert report.bytes_copied == 106
    assert dst.blobs == {}
    assert dst.calls["put"] == 0


def test_the_report_is_one_json_log_line(src, dst, caplog):
    caplog.set_level(logging.INFO, logger="crosscloud.backup.report")
    src.seed(".crosscloud/x", b"x")
    report = run(src, dst)
    lines = [r.getMessage() for r in caplog.records if r.name == "crosscloud.backup.report"]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    logged = json.loads(lines[0])
    assert logged["event"] == "backup_report"
    assert logged["run_id"] == report.run_id
    assert logged["failed"] == [{"key": ".crosscloud/x", "reason": report.failed[0].reason}]
    assert {"started", "finished", "copied", "skipped", "bytes_copied", "duration_s", "throughput_mib_s",
            "complete", "dry_run"} <= logged.keys()


# --- the lease --------------------------------------------------------------------------
LEASE = "bk/" + LEASE_NAME


def lease_body(store: FakeStore) -> dict:
    return json.loads(store.blobs[LEASE].data)


def test_a_run_holds_the_lease_and_releases_it(src, dst):
    seen: list[dict] = []
    dst.put_hook = lambda key: seen.append(lease_body(dst)) if key == "bk/a.txt" else None
    report = run(src, dst)
    assert seen[0]["run_id"] == report.run_id
    assert not seen[0]["released"]
    assert lease_body(dst)["released"]
    assert lease_body(dst)["expires_epoch"] < time.time()


def test_a_second_run_is_refused_while_the_lease_is_held(src, dst):
    other = Lease(dst, LEASE, "other-run", ttl=30).acquire()
    with pytest.raises(LeaseHeld, match="another backup run \\(other-run\\) holds the lease until"):
        run(src, dst)
    assert data_keys(dst) == set()
    other.release()
    assert run(src, dst).copied == 4


def test_an_expired_lease_of_a_killed_run_is_taken_over(src, dst):
    dst.seed(LEASE, json.dumps({"run_id": "killed", "expires_epoch": time.time() - 1}).encode())
    lease = Lease(dst, LEASE, "me", ttl=30).acquire()
    assert lease.took_over == "killed"
    assert lease_body(dst)["run_id"] == "me"
    lease.release()


def test_a_conflict_caused_by_our_own_retried_write_keeps_the_lease(dst):
    class RetriedOnce(FakeStore):
        tripped = False

        def put(self, key, stream, size, options):  # noqa: ANN001, ANN201
            result = super().put(key, stream, size, options)
            if not self.tripped:  # the write landed, the response was lost, the retry lost the race
                self.tripped = True
                raise PreconditionFailed(key)
            return result

    store = RetriedOnce("s3")
    lease = Lease(store, LEASE, "me", ttl=30).acquire()
    assert lease.etag == store.blobs[LEASE].etag
    lease.release()


def test_a_lease_taken_over_by_another_run_is_noticed(dst):
    lease = Lease(dst, LEASE, "me", ttl=1.5).acquire()
    dst.seed(LEASE, b'{"run_id": "usurper", "expires_epoch": 9e9}')
    assert lease.lost.wait(3)
    lease.release()
    assert lease_body(dst)["run_id"] == "usurper"  # a lost lease is never released


def test_losing_the_lease_stops_the_run(src, dst):
    backup = Backup(src, dst, replace(CONFIG, concurrency=1))

    def hook(key: str) -> None:
        if key == "bk/a.txt" and backup._lease is not None:
            backup._lease.lost.set()

    dst.put_hook = hook
    report = backup.run()
    assert not report.complete
    assert report.stop_reason == "the run lease was lost to another run"
    assert INDEX not in dst.blobs  # a run that lost its lease writes no index


# --- configuration and memory -----------------------------------------------------------
def test_settings_defaults_and_errors_name_the_setting():
    config = BackupConfig.from_settings(Settings({}))
    assert (config.prefix, config.part_size, config.concurrency, config.part_concurrency) == ("backup/", 16 * MIB, 8, 4)
    assert config.time_budget_s == 1500
    assert config.source_prefix == ""
    with pytest.raises(SettingError, match="BACKUP_PART_SIZE_MB must be from 5 to 5120"):
        BackupConfig.from_settings(Settings({"BACKUP_PART_SIZE_MB": "4"}))
    with pytest.raises(SettingError, match="BACKUP_PART_SIZE_MB must be from 5 to 5120"):
        BackupConfig.from_settings(Settings({"BACKUP_PART_SIZE_MB": "6000"}))
    with pytest.raises(SettingError, match="BACKUP_CONCURRENCY is malformed"):
        BackupConfig.from_settings(Settings({"BACKUP_CONCURRENCY": "many"}))
    with pytest.raises(SettingError, match="BACKUP_SOURCE_PREFIX is malformed"):
        BackupConfig.from_settings(Settings({"BACKUP_SOURCE_PREFIX": "/abs"}))


def test_part_size_grows_where_ten_thousand_parts_would_not_do():
    assert CONFIG.part_size_for(10 * MIB) == 5 * MIB
    assert CONFIG.part_size_for(10_000 * 5 * MIB) == 5 * MIB
    assert CONFIG.part_size_for(10_000 * 5 * MIB + 1) == 6 * MIB


def test_memory_budget_holds_copies_back_but_lets_an_oversized_one_run_alone():
    budget = MemoryBudget(100)
    order: list[str] = []
    with budget.reserve(60):
        started = threading.Event()

        def second() -> None:
            started.set()
            with budget.reserve(60):
                order.append("second")

        waiter = threading.Thread(target=second)
        waiter.start()
        started.wait()
        time.sleep(0.05)
        order.append("first done")
    waiter.join(2)
    assert order == ["first done", "second"]
    with budget.reserve(500):  # larger than the budget: runs, alone
        pass


def test_a_run_over_part_of_the_source_keeps_the_index_for_the_rest(src, dst):
    run(src, dst)
    run(src, dst, source_prefix="dir/")
    dst.calls.clear()
    report = run(src, dst)
    assert (report.copied, report.skipped) == (0, 4)
    assert dst.calls["stat"] == 0
