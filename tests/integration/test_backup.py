"""Backup against the local cloud: Azurite -> moto with the backup role's real policy.

Each test backs up only its own source prefix (BACKUP_SOURCE_PREFIX) into its own
destination prefix (backup/<prefix>), so runs, leases and indexes never meet. Faults are
injected at the edges (a wrapped `put`, a wrong Content-MD5 on the blob, SIGKILL); every
byte that is compared is read back with admin credentials and compared by SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import ContentSettings
from botocore.exceptions import ClientError

from crosscloud import backup
from crosscloud.backup.config import BackupConfig
from crosscloud.backup.lease import LEASE_NAME, Lease, LeaseHeld
from crosscloud.backup.metadata import SOURCE_ETAG
from crosscloud.backup.run import Backup
from crosscloud.errors import UpstreamError
from crosscloud.settings import Settings
from crosscloud.stores import factory
from tests.integration.calls import count_calls

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Scope:
    source: str  # source prefix (the test's unique prefix)
    dest: str  # destination prefix
    bucket: str
    azure: Any
    s3: Any

    def seed(self, files: dict[str, bytes], **kwargs: Any) -> None:
        for name, data in files.items():
            self.azure.upload_blob(self.source + name, data, overwrite=True, max_concurrency=4, **kwargs)

    def dest_keys(self) -> set[str]:
        keys = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.dest):
            keys |= {o["Key"][len(self.dest):] for o in page.get("Contents", [])}
        return keys

    def data_keys(self) -> set[str]:
        return {k[len(self.source):] for k in self.dest_keys() if not k.startswith(".crosscloud/")}

    def copy_of(self, name: str) -> dict[str, Any]:
        return self.s3.get_object(Bucket=self.bucket, Key=self.dest + self.source + name, ChecksumMode="ENABLED")

    def assert_identical(self, names: list[str]) -> None:
        for name in names:
            source = self.azure.download_blob(self.source + name).readall()
            copy = self.copy_of(name)["Body"].read()
            assert hashlib.sha256(copy).hexdigest() == hashlib.sha256(source).hexdigest(), name

    def uploads(self) -> list[dict[str, Any]]:
        return self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=self.dest).get("Uploads", [])


@pytest.fixture(params=["fast", "sdk"])
def scope(request, env, monkeypatch, prefix, azure_admin, aws_admin) -> Scope:
    """Every backup test runs with the small-object fast path on (the default) and off."""
    dest = f"{env['BACKUP_S3_PREFIX']}{prefix}"
    monkeypatch.setenv("BACKUP_FAST_PATH_MB", "8" if request.param == "fast" else "0")
    monkeypatch.setenv("BACKUP_SOURCE_PREFIX", prefix)
    monkeypatch.setenv("BACKUP_S3_PREFIX", dest)
    monkeypatch.setenv("BACKUP_PART_SIZE_MB", "5")  # S3's minimum: multipart at 5 MiB keeps tests fast
    return Scope(prefix, dest, env["BACKUP_S3_BUCKET"], azure_admin, aws_admin)


def engine(**changes: Any) -> Backup:
    """The configured engine (the stores the app would use), with test-only tweaks."""
    settings = Settings()
    config = replace(BackupConfig.from_settings(settings), **changes)
    return Backup(factory.azure_store(settings), factory.s3_store(settings, backup=True), config)


FILES = {
    "empty": b"",
    "one-byte": b"1",
    **{f"many/{i:03d}.txt": os.urandom(100 + i) for i in range(20)},
    "nested/a/b/c/deep.bin": os.urandom(1000),
    "unicode/Grüße ü 日本.txt": "Grüße aus Azure\n".encode(),
    "odd/#hash ?query %pct +plus&amp=.txt": b"odd names",
    "big/multipart.bin": os.urandom(11 * MIB + 123),  # 3 parts of 5 MiB
}


def test_incremental_backup_copies_exactly_what_is_new_or_changed(scope, monkeypatch):
    scope.seed(FILES)
    scope.azure.upload_blob(scope.source + "typed.csv", b"a,b\n1,2\n", overwrite=True, metadata={"owner": "team-a"},
                            content_settings=ContentSettings(content_type="text/csv"))
    names = [*FILES, "typed.csv"]

    first = backup.run_configured()
    assert first.failed == []
    assert (first.copied, first.skipped, first.complete) == (len(names), 0, True)
    assert scope.data_keys() == set(names)
    scope.assert_identical(names)
    typed = scope.copy_of("typed.csv")
    assert typed["ContentType"] == "text/csv"
    assert typed["Metadata"]["owner"] == "team-a"
    props = scope.azure.get_blob_client(scope.source + "typed.csv").get_blob_properties()
    assert typed["Metadata"][SOURCE_ETAG] == props.etag.strip('"')
    big = scope.copy_of("big/multipart.bin")
    assert big["ETag"].strip('"').endswith("-3")  # really a multipart upload
    assert big["ChecksumSHA256"].endswith("-3")  # verified against our composite of the parts

    heads = count_calls(monkeypatch, factory.s3_store(backup=True), "stat")
    second = backup.run_configured()
    assert (second.copied, second.skipped, second.failed_count, second.complete) == (0, len(names), 0, True)
    assert heads == []  # the listings and the index told; no per-object HEAD

    scope.seed({"many/000.txt": os.urandom(100), "fresh.txt": b"new"})  # same size, new content; new
    third = backup.run_configured()
    assert (third.copied, third.skipped, third.failed_count) == (2, len(names) - 1, 0)
    scope.assert_identical(["many/000.txt", "fresh.txt"])
    assert heads == []


def test_without_an_index_unchanged_objects_are_recognised_by_head(scope, monkeypatch):
    scope.seed({"a.txt": b"alpha", "b.txt": b"beta"})
    backup.run_configured()
    scope.s3.delete_object(Bucket=scope.bucket, Key=scope.dest + ".crosscloud/index.jsonl.gz")  # admin
    scope.seed({"a.txt": b"ALPHA"})
    heads = count_calls(monkeypatch, factory.s3_store(backup=True), "stat")
    report = backup.run_configured()
    assert (report.copied, report.skipped) == (1, 1)
    assert sorted(heads) == [scope.dest + scope.source + "a.txt", scope.dest + scope.source + "b.txt"]
    scope.assert_identical(["a.txt", "b.txt"])


def test_dry_run_reports_and_writes_nothing(scope):
    scope.seed({"a.txt": b"alpha", "b/c.txt": b"gamma"})
    report = backup.run_configured(dry_run=True)
    assert report.dry_run
    assert (report.copied, report.bytes_copied) == (2, 10)
    assert scope.dest_keys() == set()  # not even a lease or an index


def test_backup_role_cannot_write_or_delete_outside_its_prefix(scope, monkeypatch):
    client = factory.s3_store(backup=True).client
    with pytest.raises(ClientError) as denied:
        client.put_object(Bucket=scope.bucket, Key=f"elsewhere/{scope.source}x", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    scope.seed({"a.txt": b"alpha"})
    backup.run_configured()
    for key in (scope.source + "a.txt", LEASE_NAME):  # no deletes at all: the lease is released by overwriting
        with pytest.raises(ClientError) as denied:
            client.delete_object(Bucket=scope.bucket, Key=scope.dest + key)
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    monkeypatch.setenv("BACKUP_S3_PREFIX", f"elsewhere/{scope.source}")
    with pytest.raises(UpstreamError) as refused:
        backup.run_configured()
    assert refused.value.code == "s3_forbidden"
    assert "crosscloud-backup" in refused.value.message


def test_s3_failing_for_some_objects_loses_nothing(scope, monkeypatch):
    names = [f"obj-{i}.txt" for i in range(6)]
    scope.seed({name: os.urandom(500) for name in names})
    dest = factory.s3_store(backup=True)
    real_put, failures = dest.put, {"obj-1.txt": 99, "obj-4.txt": 1}  # always / once

    def faulty_put(key: str, *args: Any, **kwargs: Any) -> Any:
        name = key.rsplit("/", 1)[-1]
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            raise UpstreamError("S3 write failed: SlowDown", code="s3_error", status=503, retry_after=5)
        return real_put(key, *args, **kwargs)

    monkeypatch.setattr(dest, "put", faulty_put)
    report = engine(retry_base_s=0.05).run()
    assert [(f.key, f.reason) for f in report.failed] == [(scope.source + "obj-1.txt", "S3 write failed: SlowDown")]
    assert report.copied == 5  # obj-4 made it on its second attempt
    assert scope.data_keys() == set(names) - {"obj-1.txt"}

    monkeypatch.setattr(dest, "put", real_put)
    again = backup.run_configured()
    assert (again.copied, again.skipped, again.failed_count) == (1, 5, 0)
    scope.assert_identical(names)


def test_bytes_that_do_not_match_the_source_md5_never_become_a_copy(scope):
    scope.seed({"small.txt": b"small payload", "large.bin": os.urandom(6 * MIB)})
    wrong = ContentSettings(content_type="application/octet-stream", content_md5=bytearray(16))
    for name in ("small.txt", "large.bin"):
        scope.azure.get_blob_client(scope.source + name).set_http_headers(content_settings=wrong)
    report = engine(retry_base_s=0.05).run()
    assert sorted(f.key for f in report.failed) == [scope.source + "large.bin", scope.source + "small.txt"]
    assert all("Content-MD5" in f.reason for f in report.failed)
    assert scope.data_keys() == set()
    assert scope.uploads() == []  # the multipart upload was aborted, not left behind

    for name in ("small.txt", "large.bin"):  # repair the source; the next run copies both
        data = scope.azure.download_blob(scope.source + name).readall()
        fixed = ContentSettings(content_type="application/octet-stream",
                                content_md5=bytearray(hashlib.md5(data, usedforsecurity=False).digest()))
        scope.azure.get_blob_client(scope.source + name).set_http_headers(content_settings=fixed)
    report = backup.run_configured()
    assert (report.copied, report.failed_count) == (2, 0)
    scope.assert_identical(["small.txt", "large.bin"])


def _wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_run_killed_mid_upload_leaves_no_partial_object_and_the_next_run_converges(scope):
    scope.seed({"huge.bin": os.urandom(48 * MIB)})
    key = scope.dest + scope.source + "huge.bin"
    child_env = {**os.environ, "BACKUP_PART_CONCURRENCY": "1", "BACKUP_LEASE_SECONDS": "3"}
    child = subprocess.Popen([sys.executable, "-m", "crosscloud", "backup", "--json"], cwd=ROOT, env=child_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def upload_with_a_part() -> bool:
            return any(u["Key"] == key and scope.s3.list_parts(Bucket=scope.bucket, Key=key, UploadId=u["UploadId"])
                       .get("Parts") for u in scope.uploads())

        _wait_for(upload_with_a_part, 60, "the child to upload a part")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    with pytest.raises(ClientError):  # nothing visible: a multipart upload completes atomically
        scope.s3.head_object(Bucket=scope.bucket, Key=key)
    assert [u["Key"] for u in scope.uploads()] == [key]

    lease = json.loads(scope.s3.get_object(Bucket=scope.bucket, Key=scope.dest + LEASE_NAME)["Body"].read())
    assert not lease["released"]
    time.sleep(max(0.0, lease["expires_epoch"] - time.time()) + 0.2)  # the dead run's lease runs out

    report = backup.run_configured()
    assert report.incomplete_uploads_aborted == 1
    assert (report.copied, report.failed_count, report.complete) == (1, 0, True)
    assert scope.uploads() == []
    scope.assert_identical(["huge.bin"])


def test_names_s3_cannot_take_are_reported_never_dropped(scope, monkeypatch):
    long_name = "é" * 600  # 600 characters for Azure, 1,200 bytes for S3
    scope.seed({long_name: b"long", "fine.txt": b"fine"})
    report = backup.run_configured()
    assert [f.key for f in report.failed] == [scope.source + long_name]
    assert "S3 allows at most 1024" in report.failed[0].reason
    assert report.copied == 1

    reserved = f".crosscloud/{scope.source}x"  # would land in the destination's lease area
    scope.azure.upload_blob(reserved, b"x", overwrite=True)
    try:
        monkeypatch.setenv("BACKUP_SOURCE_PREFIX", ".crosscloud")
        report = backup.run_configured()
        assert reserved in {f.key for f in report.failed}
        assert "reserved .crosscloud/ area" in next(f.reason for f in report.failed if f.key == reserved)
    finally:
        scope.azure.delete_blob(reserved)


def test_the_lease_keeps_a_second_run_out_and_an_expired_one_is_taken_over(scope):
    scope.seed({"a.txt": b"alpha"})
    store = factory.s3_store(backup=True)
    other = Lease(store, scope.dest + LEASE_NAME, "other-run", ttl=30).acquire()
    with pytest.raises(LeaseHeld, match=r"another backup run \(other-run\) holds the lease"):
        backup.run_configured()
    assert scope.dest_keys() == {LEASE_NAME}
    other._stop.set()  # the other run dies without releasing: its lease must expire first
    stale = json.dumps({"run_id": "dead-run", "expires_epoch": time.time() - 1}).encode()
    scope.s3.put_object(Bucket=scope.bucket, Key=scope.dest + LEASE_NAME, Body=stale)
    report = backup.run_configured()
    assert report.copied == 1
    lease = json.loads(scope.s3.get_object(Bucket=scope.bucket, Key=scope.dest + LEASE_NAME)["Body"].read())
    assert lease["run_id"] == report.run_id
    assert lease["released"]


def test_http_function_and_timer_run_the_configured_backup(scope, caplog):
    from blueprints.backup import backup_now, backup_timer

    scope.seed({"a.txt": b"alpha", "b.txt": b"beta"})
    dry = backup_now(func.HttpRequest("POST", "http://localhost/api/backup?dry_run=true", body=b"",
                                      params={"dry_run": "true"}))
    assert dry.status_code == 200
    assert json.loads(dry.get_body())["copied"] == 2
    assert scope.dest_keys() == set()

    backup_timer(TimerRequest(past_due=True))
    assert "past due" in caplog.text
    assert scope.data_keys() == {"a.txt", "b.txt"}

    again = backup_now(func.HttpRequest("POST", "http://localhost/api/backup", body=b""))
    assert again.status_code == 200
    body = json.loads(again.get_body())
    assert (body["copied"], body["skipped"], body["complete"]) == (0, 2, True)


def test_an_http_budget_run_answers_in_time_with_large_objects_pending(scope):
    """POST /api/backup's rule (front end cuts at 230 s): a copy that cannot finish in the
    remaining budget is not started; it is reported pending with its bytes, the small ones copy."""
    scope.seed({"small.txt": b"small", "large.bin": os.urandom(24 * MIB)})
    started = time.monotonic()
    report = engine(time_budget_s=20, assumed_mib_s=0.5).run()  # 20 s at 0.5 MiB/s: 24 MiB does not fit
    assert time.monotonic() - started < 20
    assert (report.copied, report.pending, report.pending_bytes) == (1, 1, 24 * MIB)
    assert not report.complete
    assert scope.data_keys() == {"small.txt"}
    assert scope.uploads() == []  # nothing was started for the large one


def test_names_that_azure_and_s3_order_differently_are_compared_without_heads(scope, monkeypatch):
    """Azure lists in UTF-16 code-unit order, S3 in UTF-8 byte order: `a😀` and `a～` swap
    places. The rerun walks both listings in step and still sends no HEAD and no copy."""
    names = ["a0", "a😀", "a～", "a😀/x", "a～/y", "b", "（括弧）", "😀😀"]
    scope.seed({name: name.encode() * 3 for name in names})
    first = backup.run_configured()
    assert (first.copied, first.failed_count, first.complete) == (len(names), 0, True)
    heads = count_calls(monkeypatch, factory.s3_store(backup=True), "stat")
    second = backup.run_configured()
    assert (second.copied, second.skipped, second.complete) == (0, len(names), True)
    assert heads == []
    scope.assert_identical(names)
