"""Restore's decisions, its input checks and the point-in-time selection, over fakes.

The clouds (moto versioning, Azurite's conditional writes) are in tests/integration/test_restore.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

import azure.functions as func
import pytest

from blueprints.restore import restore_now
from crosscloud import cli
from crosscloud.backup import HTTP_TIME_BUDGET_S, restore
from crosscloud.backup.metadata import SOURCE_ETAG, SOURCE_MD5, UNVERIFIED
from crosscloud.backup.plan import Action
from crosscloud.backup.restore import Restore, RestoreRequest, parse_as_of, parse_request
from crosscloud.backup.restore_plan import RestorePlanner, recorded_md5
from crosscloud.backup.run import Backup
from crosscloud.backup.stream import VerifyingStream
from crosscloud.errors import BadRequest, IntegrityError
from crosscloud.stores.base import ObjectInfo, PutOptions, PutResult, ReadPastEnd
from crosscloud.stores.s3_versions import VersionedView, current_at
from tests.unit.test_backup import CONFIG, FakeStore

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def entry(key: str, seconds: int, version: str, *, marker: bool = False, latest: bool = False,
          size: int = 1) -> dict[str, Any]:
    return {"Key": key, "LastModified": at(seconds), "VersionId": version, "IsLatest": latest,
            "_marker": marker, "Size": size, "ETag": f'"{version}"'}


# --- the version current at a moment ----------------------------------------------------

def test_the_newest_version_not_after_the_moment_is_chosen():
    entries = [entry("k", 30, "v3", latest=True), entry("k", 20, "v2"), entry("k", 10, "v1")]
    assert current_at(entries, at(25))["VersionId"] == "v2"
    assert current_at(entries, at(20))["VersionId"] == "v2"  # written at the moment: current then
    assert current_at(entries, at(99))["VersionId"] == "v3"
    assert current_at(entries, at(5)) is None  # not backed up yet


def test_a_delete_marker_current_at_the_moment_means_absent():
    entries = [entry("k", 30, "v2", latest=True), entry("k", 20, "m1", marker=True), entry("k", 10, "v1")]
    assert current_at(entries, at(25)) is None
    assert current_at(entries, at(15))["VersionId"] == "v1"
    assert current_at(entries, at(35))["VersionId"] == "v2"


def test_ties_within_a_second_prefer_latest_then_a_version_then_the_first_listed():
    assert current_at([entry("k", 10, "v1"), entry("k", 10, "m", marker=True, latest=True)], at(10)) is None
    assert current_at([entry("k", 10, "m", marker=True), entry("k", 10, "v1")], at(10))["VersionId"] == "v1"
    assert current_at([entry("k", 10, "v2"), entry("k", 10, "v1")], at(10))["VersionId"] == "v2"


class FakeVersionsClient:
    """ListObjectVersions pages as botocore's paginator yields them (fakes: unit tests only)."""

    def __init__(self, pages: list[dict[str, Any]]):
        self.pages = pages
        self.gets: list[tuple[str, str]] = []

    def get_paginator(self, name: str) -> Any:
        assert name == "list_object_versions"
        client = self

        class Paginator:
            def paginate(self, **params: Any) -> Any:
                assert params["Prefix"] == "bk/"
                return iter(client.pages)

        return Paginator()

    def head_object(self, **params: Any) -> dict[str, Any]:
        self.gets.append((params["Key"], params["VersionId"]))
        return {"ContentLength": 1, "LastModified": T0, "ETag": '"e"', "Metadata": {}}


class FakeS3:
    bucket, role_arn = "bucket", "role"

    def __init__(self, client: FakeVersionsClient):
        self.client = client

    def describe(self) -> str:
        return "S3 bucket bucket"

    def _errors(self, action: str, key: str | None = None) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def _info(self, key: str, head: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(key, head["ContentLength"], head["LastModified"], "e", metadata=head["Metadata"])


def _page(versions: list[dict[str, Any]], markers: list[dict[str, Any]], truncated: bool) -> dict[str, Any]:
    strip = [{k: v for k, v in e.items() if k != "_marker"} for e in versions]
    return {"Versions": strip, "DeleteMarkers": [{k: v for k, v in e.items() if k != "_marker"} for e in markers],
            "IsTruncated": truncated}


def test_a_key_whose_versions_straddle_pages_is_decided_with_the_next_page():
    pages = [
        _page([entry("bk/a", 10, "a1", latest=True), entry("bk/b", 5, "b1")], [], truncated=True),
        # b's newest entry (a delete marker before the moment) arrives on the next page
        _page([entry("bk/c", 10, "c1", latest=True)], [entry("bk/b", 8, "bm", marker=True, latest=True)], False),
    ]
    client = FakeVersionsClient(pages)
    view = VersionedView(FakeS3(client), at(20))  # type: ignore[arg-type]
    listed = [item.key for page in view.list_pages("bk/") for item in page.items]
    assert listed == ["bk/a", "bk/c"]  # b was deleted before the moment
    view.stat("bk/c")
    assert client.gets == [("bk/c", "c1")]  # reads pin the version the listing chose


# --- the planner ------------------------------------------------------------------------

def md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def planner(blobs: FakeStore, backup: FakeStore, **kwargs: Any) -> RestorePlanner:
    plan = RestorePlanner(backup, blobs, backup=backup, backup_prefix="bk/", **kwargs)
    plan.prepare()
    return plan


def backup_copy(backup: FakeStore, name: str, data: bytes, source_etag: str, *, with_md5: bool = True) -> ObjectInfo:
    metadata = {SOURCE_ETAG: source_etag, **({SOURCE_MD5: base64.b64encode(md5(data)).decode()} if with_md5 else {})}
    blob = backup.seed("bk/" + name, data, metadata=metadata)
    return ObjectInfo("bk/" + name, len(data), T0, blob.etag)


def test_planner_creates_missing_blobs_only_if_still_absent_and_ignores_the_reserved_area():
    blobs, backup = FakeStore("azure"), FakeStore("s3")
    info = backup_copy(backup, "a.txt", b"alpha", "0xA")
    plan = planner(blobs, backup)
    decision = plan.classify(info)
    assert (decision.action, decision.if_none_match, decision.if_match) == (Action.COPY, True, None)
    assert plan.classify(ObjectInfo("bk/.crosscloud/lease", 3, T0, "e")).action is Action.IGNORE
    assert plan.dest_key("bk/a.txt") == "a.txt"
    assert RestorePlanner(backup, blobs, backup=backup, backup_prefix="bk/", to_prefix="side/").dest_key(
        "bk/a.txt") == "side/a.txt"


def test_planner_skips_blobs_holding_the_version_and_keeps_the_others():
    blobs, backup = FakeStore("azure"), FakeStore("s3")
    original = blobs.seed("same-etag.txt", b"one")
    same_etag = backup_copy(backup, "same-etag.txt", b"one", original.etag)
    blobs.seed("same-md5.txt", b"two")  # re-written: new ETag, same bytes (Content-MD5 tells)
    same_md5 = backup_copy(backup, "same-md5.txt", b"two", "0xOLD")
    blobs.seed("changed.txt", b"333")  # same size, other bytes
    changed = backup_copy(backup, "changed.txt", b"abc", "0xOLD")
    blobs.seed("longer.txt", b"much longer now")
    longer = backup_copy(backup, "longer.txt", b"short", "0xOLD")
    plan = planner(blobs, backup)
    backup.calls.clear()

    in_order = [changed, longer, same_etag, same_md5]  # classify sees the backup listing's order
    assert [plan.classify(info).action for info in in_order] == [Action.CHECK, Action.KEEP, Action.CHECK,
                                                                  Action.CHECK]
    assert backup.calls["stat"] == 0  # size alone told for longer.txt
    for info, expected in ((changed, Action.KEEP), (same_etag, Action.SKIP), (same_md5, Action.SKIP)):
        assert plan.check(info).action is expected, info.key
    assert backup.calls["stat"] == 3  # one HEAD per key present on both sides

    overwrite = planner(blobs, backup, overwrite=True)
    decision = overwrite.classify(longer)
    assert (decision.action, decision.if_match) == (Action.COPY, blobs.blobs["longer.txt"].etag)


def test_planner_uses_the_backup_index_to_skip_without_a_head():
    src, backup = FakeStore("azure"), FakeStore("s3")
    src.seed("a.txt", b"alpha")
    assert Backup(src, backup, CONFIG).run().copied == 1  # writes bk/.crosscloud/index.jsonl.gz
    copy = backup.blobs["bk/a.txt"]
    for version_etag, expected in ((copy.etag, Action.SKIP), ("another-version", Action.CHECK)):
        plan = RestorePlanner(backup, src, backup=backup, backup_prefix="bk/")
        plan.prepare()
        assert plan.classify(ObjectInfo("bk/a.txt", 5, T0, version_etag)).action is expected


def test_recorded_md5_ignores_malformed_values():
    assert recorded_md5({SOURCE_MD5: base64.b64encode(md5(b"x")).decode()}) == md5(b"x")
    assert recorded_md5({SOURCE_MD5: "not base64!"}) is None
    assert recorded_md5({SOURCE_MD5: base64.b64encode(b"short").decode()}) is None
    assert recorded_md5(None) is None


# --- the run, over fakes ----------------------------------------------------------------

class Blobs(FakeStore):
    """A container that keeps the Content-MD5 a put sets, as Azure does."""

    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        result = super().put(key, stream, size, options)
        self.blobs[key].md5 = options.content_md5
        return result


def test_restore_strips_bookkeeping_sets_the_recorded_md5_and_skips_unverified_copies():
    src, backup = Blobs("azure"), FakeStore("s3")
    src.seed("typed.csv", b"a,b\n", content_type="text/csv", metadata={"Owner": "team-a"})
    src.seed("bad.bin", b"bytes")
    Backup(src, backup, CONFIG).run()
    backup.blobs["bk/bad.bin"].metadata = {UNVERIFIED: "checksum mismatch"}
    expected_md5 = src.blobs["typed.csv"].md5
    src.blobs.clear()

    report = Restore(backup, src, CONFIG, RestoreRequest(to_prefix="r/")).run()
    assert report.copied == 1
    assert [f.key for f in report.failed] == ["bk/bad.bin"]
    assert "marked unverified" in report.failed[0].reason
    restored = src.blobs["r/typed.csv"]
    assert (restored.data, restored.content_type, restored.metadata) == (b"a,b\n", "text/csv", {"owner": "team-a"})
    assert restored.md5 == expected_md5
    assert "r/bad.bin" not in src.blobs


def test_an_empty_backup_is_an_error_naming_the_parameters():
    backup, blobs = FakeStore("s3"), FakeStore("azure")
    backup.seed("bk/.crosscloud/lease", b"{}")  # the reserved area does not count
    with pytest.raises(BadRequest, match="nothing to restore.*--prefix"):
        Restore(backup, blobs, CONFIG, RestoreRequest(prefix="p/")).run()
    assert blobs.calls["put"] == 0


# --- input ------------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "code", "names"), [
    ({"as_of": "yesterday"}, "invalid_as_of", "--as-of"),
    ({"as_of": "2999-01-01T00:00:00Z"}, "invalid_as_of", "in the future"),
    ({"to_prefix": "/x/"}, "invalid_to_prefix", "--to-prefix"),
    ({"to_prefix": "a//b/"}, "invalid_to_prefix", "--to-prefix"),
    ({"to_prefix": "a\\b"}, "invalid_to_prefix", "--to-prefix"),
    ({"to_prefix": "x" * 1025}, "invalid_to_prefix", "--to-prefix"),
    ({"prefix": "./a"}, "invalid_prefix", "--prefix"),
    ({"prefix": ".crosscloud/"}, "invalid_prefix", "--prefix"),
])
def test_bad_input_names_the_parameter(params: dict[str, str], code: str, names: str):
    with pytest.raises(BadRequest) as refused:
        parse_request(**params)
    assert refused.value.code == code
    assert names in refused.value.message


def test_as_of_is_utc_unless_an_offset_is_given():
    assert parse_as_of("2026-03-01T12:00:00") == T0
    assert parse_as_of("2026-03-01T12:00:00Z") == T0
    assert parse_as_of("2026-03-01T13:00:00+01:00") == T0
    assert parse_as_of(None) is None
    assert parse_request(prefix="a/", to_prefix="side/x-").to_prefix == "side/x-"


# --- the triggers (engine replaced by a recorder) ----------------------------------------

@pytest.fixture
def restores(monkeypatch):
    from crosscloud.backup.report import BackupReport

    recorded: list[dict[str, Any]] = []

    def fake_run(request, settings=None, *, dry_run=False, progress=None, max_seconds=None):  # noqa: ANN001, ANN202
        recorded.append({"request": request, "dry_run": dry_run, "max_seconds": max_seconds})
        return BackupReport(run_id="r1", source="s", destination="d", started="t", complete=True, copied=1,
                            skipped_newer=2)

    monkeypatch.setattr(restore, "run_configured", fake_run)
    return recorded


def test_post_restore_passes_the_parameters_within_the_http_budget(restores):
    params = {"prefix": "p/", "as_of": "2026-03-01T12:00:00Z", "to_prefix": "q/", "overwrite": "true",
              "dry_run": "1"}
    response = restore_now(func.HttpRequest("POST", "http://localhost/api/restore", body=b"", params=params))
    assert response.status_code == 200
    assert json_body(response)["skipped_newer"] == 2
    assert restores == [{"request": RestoreRequest("p/", T0, "q/", True), "dry_run": True,
                         "max_seconds": HTTP_TIME_BUDGET_S}]
    bad = restore_now(func.HttpRequest("POST", "http://localhost/api/restore", body=b"",
                                       params={"to_prefix": "/abs"}))
    assert bad.status_code == 400
    assert json_body(bad)["error"]["code"] == "invalid_to_prefix"
    assert len(restores) == 1  # nothing ran


def json_body(response: Any) -> Any:
    return json.loads(response.get_body())


def test_restore_function_metadata_is_an_admin_post_route():
    script = ("import json, function_app\n"
              "print(json.dumps({f.get_function_name(): f.get_bindings_dict() for f in "
              "function_app.app.get_functions()}, default=str))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "S3_", "BACKUP_"))}
    out = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2], env=env,
                         capture_output=True, text=True, check=True).stdout
    http = json.loads(out.strip().splitlines()[-1])["restore_now"]["bindings"][0]
    assert (http["route"], http["methods"]) == ("restore", ["POST"])
    assert "ADMIN" in http["authLevel"].upper()


def test_cli_restore_summary_names_skipped_newer(restores, capsys):
    assert cli.main(["restore", "--prefix", "p/", "--as-of", "2026-03-01T12:00:00Z", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "restore r1: complete" in out
    assert "skipped_newer 2 (left alone)" in out
    assert restores[0]["request"] == RestoreRequest("p/", T0, "", True)


def test_read_past_end_lets_a_verifying_stream_refuse_before_an_uploader_that_stops_at_the_length():
    def stream(data: bytes, declared_md5: bytes) -> VerifyingStream:
        return VerifyingStream(iter([data[:3], data[3:]]), key="k", size=len(data), part_size=4,
                               content_md5=declared_md5)

    plain = stream(b"abcdef", md5(b"other"))
    assert plain.read(6) == b"abcdef"  # an uploader taking exactly `size` never sees the check
    with pytest.raises(IntegrityError, match="Content-MD5"):
        ReadPastEnd(stream(b"abcdef", md5(b"other")), 6, "k").read(6)
    assert ReadPastEnd(stream(b"abcdef", md5(b"abcdef")), 6, "k").read(6) == b"abcdef"
    with pytest.raises(IntegrityError, match="more than the 4 bytes"):
        ReadPastEnd(io.BytesIO(b"abcdef"), 4, "k").read(4)
