"""Restore against the local cloud: moto (versioned backup bucket, the restore role's real
policy) -> Azurite, with the engine the app runs.

Each test backs up its own prefix into `backup/<prefix>` and restores only that prefix, so
tests never meet. Bytes are read back with admin credentials and compared by SHA-256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContentSettings
from botocore.exceptions import ClientError

from crosscloud import backup, cli
from crosscloud.backup import restore
from crosscloud.backup.config import BackupConfig
from crosscloud.errors import BadRequest
from crosscloud.settings import Settings
from crosscloud.stores import factory

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Scope:
    source: str  # the test's blob prefix
    dest: str  # its backup prefix
    bucket: str
    azure: Any
    s3: Any

    def seed(self, files: dict[str, bytes], **kwargs: Any) -> None:
        for name, data in files.items():
            self.azure.upload_blob(self.source + name, data, overwrite=True, **kwargs)

    def blobs(self, under: str = "") -> dict[str, bytes]:
        """name (relative to `under` + the test prefix) -> bytes."""
        start = under + self.source
        return {b.name[len(start):]: self.azure.download_blob(b.name).readall()
                for b in self.azure.list_blobs(name_starts_with=start)}

    def props(self, name: str, under: str = "") -> Any:
        return self.azure.get_blob_client(under + self.source + name).get_blob_properties()


@pytest.fixture
def scope(env, monkeypatch, prefix, azure_admin, aws_admin) -> Scope:
    dest = f"{env['BACKUP_S3_PREFIX']}{prefix}"
    monkeypatch.setenv("BACKUP_SOURCE_PREFIX", prefix)
    monkeypatch.setenv("BACKUP_S3_PREFIX", dest)
    monkeypatch.setenv("BACKUP_PART_SIZE_MB", "5")  # restore writes blocks of 5 MiB above 5 MiB
    return Scope(prefix, dest, env["BACKUP_S3_BUCKET"], azure_admin, aws_admin)


def run_restore(scope: Scope, **params: Any) -> Any:
    dry_run = params.pop("dry_run", False)
    request = restore.parse_request(prefix=scope.source, **params)
    return restore.run_configured(request, dry_run=dry_run)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FIRST = {
    "small.txt": b"first version of small",
    "empty": b"",
    "unicode/Grüße ü 日本.txt": "Grüße aus Azure\n".encode(),
    "big/above-block.bin": os.urandom(6 * MIB + 7),  # restored as 2 blocks of 5 MiB
    "gone.txt": b"deleted after the first backup",
}


def test_restore_as_of_and_in_place_never_clobber_and_converge(scope):
    scope.seed(FIRST)
    scope.azure.upload_blob(scope.source + "typed.csv", b"a,b\n1,2\n", overwrite=True,
                            metadata={"owner": "team-a"}, content_settings=ContentSettings(content_type="text/csv"))
    first_state = scope.blobs()
    assert backup.run_configured().copied == len(first_state)
    time.sleep(1.1)  # S3 records LastModified to the second: keep the moment clear of both backups
    moment = dt.datetime.now(dt.UTC)
    time.sleep(1.1)

    scope.seed({"small.txt": b"second version of small, longer", "new.txt": b"added later"})  # modify, add
    scope.azure.delete_blob(scope.source + "gone.txt")  # delete
    second = backup.run_configured()
    assert (second.copied, second.failed_count) == (2, 0)
    scope.seed({"small.txt": b"changed after the last backup"})  # newer than any backup

    side = f"side-{uuid.uuid4().hex[:8]}/"
    as_of = run_restore(scope, as_of=moment.isoformat(), to_prefix=side)
    assert as_of.failed == []
    assert as_of.complete
    assert (as_of.copied, as_of.skipped, as_of.skipped_newer) == (len(first_state), 0, 0)
    restored = scope.blobs(side)
    assert {k: sha(v) for k, v in restored.items()} == {k: sha(v) for k, v in first_state.items()}
    typed = scope.props("typed.csv", side)
    assert typed.content_settings.content_type == "text/csv"
    assert dict(typed.metadata) == {"owner": "team-a"}  # no crosscloud-* bookkeeping
    original_md5 = scope.props("typed.csv").content_settings.content_md5
    assert typed.content_settings.content_md5 == original_md5  # carried through, so later runs compare

    before = set(scope.blobs())
    in_place = run_restore(scope)
    assert in_place.failed == []
    assert in_place.complete
    assert (in_place.copied, in_place.skipped_newer) == (1, 1)  # gone.txt back; small.txt left alone
    assert in_place.skipped == len(first_state) + 1 - 2  # every other blob already holds its backup
    now = scope.blobs()
    assert now["gone.txt"] == FIRST["gone.txt"]
    assert now["small.txt"] == b"changed after the last backup"
    assert before <= set(now)  # nothing deleted

    again = run_restore(scope)
    assert (again.copied, again.skipped_newer, again.failed_count) == (0, 1, 0)
    side_again = run_restore(scope, as_of=moment.isoformat(), to_prefix=side)
    assert (side_again.copied, side_again.skipped, side_again.skipped_newer) == (0, len(first_state), 0)


def test_overwrite_replaces_only_the_blob_it_compared(scope):
    scope.seed({"a.txt": b"backed up", "b.txt": b"also backed up"})
    backup.run_configured()
    scope.seed({"a.txt": b"changed", "b.txt": b"changed too"})
    dry = run_restore(scope, overwrite=True, dry_run=True)
    assert (dry.copied, dry.skipped_newer) == (2, 0)
    assert scope.blobs()["a.txt"] == b"changed"  # a dry run writes nothing

    settings = Settings()
    config = BackupConfig.from_settings(settings)
    dest = factory.azure_store(settings, block_size=config.part_size, bulk=True)  # as restore builds it
    real_put = dest.put

    def racing_put(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith("b.txt"):  # someone writes b.txt between our comparison and our write
            scope.azure.upload_blob(key, b"written meanwhile", overwrite=True)
        return real_put(key, *args, **kwargs)

    dest.put = racing_put  # type: ignore[method-assign]
    try:
        report = run_restore(scope, overwrite=True)
    finally:
        del dest.put
    assert (report.copied, report.skipped_newer, report.failed_count) == (1, 1, 0)
    blobs = scope.blobs()
    assert blobs["a.txt"] == b"backed up"  # replaced If-Match the blob it had compared
    assert blobs["b.txt"] == b"written meanwhile"  # the If-Match lost: the concurrent write stands


def test_a_blob_created_meanwhile_is_not_clobbered(scope, monkeypatch):
    """Create-only holds for one Put Blob and for a block list (If-None-Match on the commit)."""
    scope.seed({"c.txt": b"backed up", "big.bin": os.urandom(6 * MIB)})
    backup.run_configured()
    for name in ("c.txt", "big.bin"):
        scope.azure.delete_blob(scope.source + name)
    settings = Settings()
    dest = factory.azure_store(settings, block_size=BackupConfig.from_settings(settings).part_size, bulk=True)
    real_put = dest.put

    def racing_put(key: str, *args: Any, **kwargs: Any) -> Any:
        scope.azure.upload_blob(key, b"created meanwhile", overwrite=True)
        return real_put(key, *args, **kwargs)

    monkeypatch.setattr(dest, "put", racing_put)
    report = run_restore(scope)
    assert (report.copied, report.skipped_newer) == (0, 2)
    assert scope.blobs() == {"c.txt": b"created meanwhile", "big.bin": b"created meanwhile"}  # creates refused


def _wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_restore_killed_midway_leaves_no_partial_blob_and_the_next_run_finishes(scope):
    data = os.urandom(64 * MIB)
    scope.seed({"huge.bin": data})
    backup.run_configured()
    scope.azure.delete_blob(scope.source + "huge.bin")
    blob = scope.azure.get_blob_client(scope.source + "huge.bin")
    child_env = {**os.environ, "BACKUP_PART_CONCURRENCY": "1"}
    child = subprocess.Popen([sys.executable, "-m", "crosscloud", "restore", "--prefix", scope.source, "--json"],
                             cwd=ROOT, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def staged_a_block() -> bool:
            try:
                return bool(blob.get_block_list("uncommitted")[1])
            except ResourceNotFoundError:
                return False

        _wait_for(staged_a_block, 60, "the child to stage a block")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert blob.get_block_list("uncommitted")[1]  # blocks were written ...
    with pytest.raises(ResourceNotFoundError):  # ... but no blob is visible: never committed
        blob.get_blob_properties()
    assert "huge.bin" not in {b.name.rsplit("/", 1)[-1] for b in scope.azure.list_blobs(name_starts_with=scope.source)}

    report = run_restore(scope)
    assert (report.copied, report.failed_count, report.complete) == (1, 0, True)
    assert sha(blob.download_blob().readall()) == sha(data)


def test_bad_input_is_refused_naming_the_parameter_and_writes_nothing(scope, capsys):
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    cases = [
        ({"as_of": future}, "invalid_as_of", "in the future"),
        ({"as_of": "last tuesday"}, "invalid_as_of", "ISO-8601"),
        ({"to_prefix": "/abs/"}, "invalid_to_prefix", "to_prefix (--to-prefix)"),
        ({"to_prefix": "a/../b/"}, "invalid_to_prefix", "to_prefix (--to-prefix)"),
    ]
    for params, code, text in cases:
        with pytest.raises(BadRequest) as refused:
            run_restore(scope, **params)
        assert refused.value.code == code
        assert text in refused.value.message

    with pytest.raises(BadRequest) as empty:  # nothing was ever backed up under this prefix
        run_restore(scope)
    assert empty.value.code == "empty_backup"
    assert "nothing to restore" in empty.value.message
    assert cli.main(["restore", "--prefix", scope.source, "--as-of", future]) == 2
    assert "--as-of" in capsys.readouterr().err
    assert scope.blobs() == {}


def test_restore_role_reads_versions_and_writes_nothing_in_s3(scope):
    scope.seed({"a.txt": b"alpha"})
    backup.run_configured()
    client = factory.s3_store(restore=True).client
    versions = client.list_object_versions(Bucket=scope.bucket, Prefix=scope.dest)["Versions"]
    assert {v["Key"] for v in versions} >= {scope.dest + scope.source + "a.txt"}
    for call in (lambda: client.put_object(Bucket=scope.bucket, Key=scope.dest + "x", Body=b"x"),
                 lambda: client.delete_object(Bucket=scope.bucket, Key=scope.dest + scope.source + "a.txt")):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    reader = factory.s3_store().client  # the read role may not list versions (restore is opt-in)
    with pytest.raises(ClientError) as denied:
        reader.list_object_versions(Bucket=scope.bucket, Prefix=scope.dest)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_http_function_restores_with_the_same_parameters(scope):
    from blueprints.restore import restore_now

    scope.seed({"a.txt": b"alpha"})
    backup.run_configured()
    side = f"http-{uuid.uuid4().hex[:8]}/"

    def post(**params: str) -> Any:
        return restore_now(func.HttpRequest("POST", "http://localhost/api/restore", body=b"",
                                            params={"prefix": scope.source, **params}))

    bad = post(as_of="tomorrow")
    assert bad.status_code == 400
    assert json.loads(bad.get_body())["error"]["code"] == "invalid_as_of"
    done = post(to_prefix=side)
    assert done.status_code == 200, done.get_body()
    assert json.loads(done.get_body())["copied"] == 1
    assert scope.blobs(side) == {"a.txt": b"alpha"}


def test_dry_run_reports_and_writes_nothing(scope):
    scope.seed({"a.txt": b"alpha", "b.txt": b"beta"})
    backup.run_configured()
    scope.azure.delete_blob(scope.source + "a.txt")
    report = run_restore(scope, dry_run=True)
    assert (report.dry_run, report.copied, report.skipped, report.bytes_copied) == (True, 1, 1, 5)
    assert set(scope.blobs()) == {"b.txt"}



def test_backup_bytes_that_do_not_match_the_recorded_md5_never_become_a_blob(scope):
    """The MD5 the backup recorded is checked while reading, before Azure commits the blob:
    one Put Blob (small) and a block list (large) alike."""
    files = {"small.txt": b"small payload", "large.bin": os.urandom(6 * MIB)}
    scope.seed(files)
    backup.run_configured()
    for name, data in files.items():  # damage the backup copies, keeping their bookkeeping
        key = scope.dest + scope.source + name
        head = scope.s3.head_object(Bucket=scope.bucket, Key=key)
        assert "crosscloud-source-content-md5" in head["Metadata"]
        scope.s3.put_object(Bucket=scope.bucket, Key=key, Body=bytes(len(data)), Metadata=head["Metadata"])
        scope.azure.delete_blob(scope.source + name)
    report = run_restore(scope)
    assert sorted(f.key.rsplit("/", 1)[-1] for f in report.failed) == ["large.bin", "small.txt"]
    assert all("Content-MD5" in f.reason for f in report.failed)
    assert scope.blobs() == {}


def test_doctor_reports_whether_restore_is_possible(env, monkeypatch):
    """Azurite does not enforce Azure RBAC, so only the S3 half can be refused locally."""
    from crosscloud.doctor import runner

    def restore_check() -> dict[str, Any]:
        factory.reset_for_tests()
        return next(c.as_json() for c in runner.run().checks if c.name == "restore_access")

    granted = restore_check()
    assert granted["status"] == "pass"
    assert "crosscloud-restore" in granted["detail"]
    assert "may write blobs" in granted["detail"]

    monkeypatch.delenv("AWS_RESTORE_ROLE_ARN")  # not set up: the backup role has no version rights
    unset = restore_check()
    assert unset["status"] == "warn"
    assert "s3:ListBucketVersions" in unset["detail"]
    assert "enable_restore" in unset["fix"]

    monkeypatch.setenv("AWS_RESTORE_ROLE_ARN", env["AWS_ROLE_ARN"])  # set up, but with the wrong role
    wrong = restore_check()
    assert wrong["status"] == "fail"
    assert "crosscloud-read" in wrong["fix"]
