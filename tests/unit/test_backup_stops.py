"""When a backup run stops, and how it says so: its lease's own clock, outages, budgets, aborts.

Each case failed on the engine before the split (issue 9) gave the run these rules (issues
10, 11, 14): the run must never schedule past the lease expiry it last secured, never call
itself complete with work failed or pending, stop fast when a cloud does not answer, and
answer within an HTTP budget however large the objects in flight.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from crosscloud.backup.lease import LEASE_NAME
from crosscloud.backup.run import OUTAGE_STOP_AFTER, Backup
from crosscloud.errors import NotFound, UpstreamError
from crosscloud.stores.base import ObjectReader
from tests.unit.test_backup import CONFIG, MIB, FakeStore

LEASE = "bk/" + LEASE_NAME


def _source(count: int, size: int = 10) -> FakeStore:
    store = FakeStore("azure")
    for i in range(count):
        store.seed(f"k{i:03d}", bytes([i % 256]) * size)
    return store


def test_a_renewal_stuck_in_retries_stops_the_run_at_the_lease_expiry_it_secured():
    src, dst = _source(40), FakeStore("s3")
    stuck = threading.Event()
    writes = {"lease": 0}

    def hook(key: str) -> None:
        if key == LEASE:
            writes["lease"] += 1
            if writes["lease"] > 1:  # every renewal hangs, as one stuck in SDK retries would
                stuck.wait(10)
        else:
            time.sleep(0.1)  # copies are slow: the run would go on well past the expiry

    dst.put_hook = hook
    started = time.monotonic()
    try:
        report = Backup(src, dst, replace(CONFIG, concurrency=1, lease_ttl_s=1.2)).run()
    finally:
        stuck.set()
    assert report.stop_reason == "the run lease reached the expiry it last secured (renewals failed)"
    assert not report.complete
    assert report.copied < 40
    assert time.monotonic() - started < 5


def test_an_upload_aborted_by_a_successor_is_reported_as_that_not_as_a_vanished_source():
    src, dst = _source(1), FakeStore("s3")

    def hook(key: str) -> None:
        if key != LEASE:
            raise NotFound("NoSuchUpload")  # what S3 answers once a successor aborted the upload

    dst.put_hook = hook
    report = Backup(src, dst, CONFIG).run()
    assert report.skipped == 0
    assert report.failed_count == 1
    assert "aborted by another run" in report.failed[0].reason
    assert not report.complete


def test_a_cloud_that_does_not_answer_stops_the_run_after_a_few_objects():
    src, dst = _source(30), FakeStore("s3")
    puts = {"n": 0}

    def hook(key: str) -> None:
        if not key.startswith("bk/.crosscloud/"):  # the lease and the index are not source objects
            puts["n"] += 1
            raise UpstreamError("S3 did not answer (ConnectTimeoutError)", code="s3_unavailable", status=503)

    dst.put_hook = hook
    report = Backup(src, dst, replace(CONFIG, concurrency=1)).run()
    assert "did not answer" in (report.stop_reason or "")
    assert report.failed_count == OUTAGE_STOP_AFTER
    assert puts["n"] == OUTAGE_STOP_AFTER * CONFIG.attempts  # then nothing new is tried
    assert report.pending + report.failed_count + report.copied <= 30
    assert not report.complete


def test_a_copy_that_cannot_finish_within_the_budget_is_not_started_and_is_reported_pending():
    src, dst = _source(2), FakeStore("s3")
    src.seed("huge", b"\x07" * (3 * MIB))
    config = replace(CONFIG, time_budget_s=5, assumed_mib_s=0.1)  # 5 s at 0.1 MiB/s: 0.5 MiB fits
    report = Backup(src, dst, config).run()
    assert report.copied == 2
    assert (report.pending, report.pending_bytes) == (1, 3 * MIB)
    assert "bk/huge" not in dst.blobs
    assert not report.complete


class SlowSource(FakeStore):
    """Yields its bytes slowly, like a large blob read over a slow link."""

    def open(self, key: str) -> ObjectReader:
        reader = super().open(key)

        def slow():
            for chunk in reader.iter_chunks():
                time.sleep(0.01)
                yield chunk

        return ObjectReader(reader.info, slow())


def test_a_copy_in_flight_is_cut_at_budget_plus_grace_so_an_http_run_answers_in_time():
    src, dst = SlowSource("azure"), FakeStore("s3")
    src.seed("slow", b"\x01" * 3000)  # 1,000 chunks of 3 bytes at 10 ms: 10 s
    config = replace(CONFIG, time_budget_s=0.5, finish_grace_s=0.5)
    started = time.monotonic()
    report = Backup(src, dst, config).run()
    assert time.monotonic() - started < 3
    assert (report.copied, report.pending, report.pending_bytes) == (0, 1, 3000)
    assert "bk/slow" not in dst.blobs  # nothing partial is visible
    assert not report.complete


def test_copies_after_a_check_run_on_the_copy_pool_so_concurrency_is_bounded():
    """BACKUP_CONCURRENCY bounds copies, also those a HEAD decided (they used to run on the checkers)."""
    src, dst = _source(12), FakeStore("s3")
    for key, blob in src.blobs.items():
        dst.seed("bk/" + key, bytes(len(blob.data)))  # same size, no index, no source ETag: HEAD, then copy
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def hook(key: str) -> None:
        if key.startswith("bk/.crosscloud/"):
            return
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1

    dst.put_hook = hook
    report = Backup(src, dst, replace(CONFIG, concurrency=2, checkers=6)).run()
    assert (report.copied, report.failed_count, report.complete) == (12, 0, True)
    assert state["most"] <= 2
