"""Restore after fan-out backups, against the local cloud: it reads the run's index segments.

A fan-out run leaves no single index file: each shard writes a segment and the run publishes
them in `index/segments.json`. Restore reads the same segments, so restoring in place after a
fan-out backup sends no per-object request, as after an in-process backup of the same data.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from crosscloud import backup
from crosscloud.backup import fanout, restore
from crosscloud.backup.config import BackupConfig
from crosscloud.settings import Settings
from crosscloud.stores import factory
from tests.integration.calls import count_calls, data_keys
from tests.integration.test_fanout import deliver, fan  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
FILES = {f"r/{i:02d}.bin": os.urandom(700 + i) for i in range(10)}


def counted_restore(monkeypatch: Any, prefix: str) -> tuple[Any, dict[str, list[str]]]:
    """Restore `prefix` in place with the stores restore builds, every store call recorded."""
    settings = Settings()
    config = BackupConfig.from_settings(settings)
    bucket = factory.s3_store(settings, restore=True)
    container = factory.azure_store(settings, block_size=config.part_size, bulk=True)
    calls = {f"{side} {method}": count_calls(monkeypatch, store, method)
             for side, store in (("s3", bucket), ("azure", container)) for method in ("stat", "open", "put")}
    report = restore.run_configured(restore.parse_request(prefix=prefix))
    monkeypatch.undo()  # the next restore counts afresh (and the settings come back below)
    return report, calls


def test_restore_after_a_fan_out_backup_reads_its_segments_and_sends_no_per_object_request(fan, monkeypatch):  # noqa: F811
    fan.seed(FILES)
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "4")
    plan = fanout.plan_configured()
    deliver(fan.messages())
    assert fan.reserved(f"runs/{plan['run_id']}/report.json")["complete"]
    assert plan["shards"] == 3
    settings = {k: os.environ[k] for k in ("BACKUP_SOURCE_PREFIX", "BACKUP_S3_PREFIX", "BACKUP_PART_SIZE_MB")}
    after_fan_out, fan_calls = counted_restore(monkeypatch, fan.source)

    for key, value in {**settings, "BACKUP_S3_PREFIX": fan.dest.rstrip("/") + "-in-process/"}.items():
        monkeypatch.setenv(key, value)
    assert backup.run_configured().complete  # the same data, backed up in-process elsewhere
    after_in_process, in_process_calls = counted_restore(monkeypatch, fan.source)

    for report in (after_fan_out, after_in_process):
        assert (report.skipped, report.copied, report.skipped_newer, report.complete) == (len(FILES), 0, 0, True)
    for name in fan_calls:  # not one HEAD, read or write of an object, either way
        assert data_keys(fan_calls[name]) == data_keys(in_process_calls[name]) == [], name
    # The index itself: the pointer, the single file's date (none) and the shards' segments,
    # against the pointer (none) and the single file: a few reads per restore, not per object.
    assert [k.rsplit(".crosscloud/", 1)[1] for k in fan_calls["s3 open"]] == \
        ["index/segments.json", *(f"runs/{plan['run_id']}/index/{n:06d}.jsonl.gz" for n in range(3))]
    assert [k.rsplit(".crosscloud/", 1)[1] for k in fan_calls["s3 stat"]] == ["index.jsonl.gz"]
    assert [k.rsplit(".crosscloud/", 1)[1] for k in in_process_calls["s3 open"]] == \
        ["index/segments.json", "index.jsonl.gz"]


def test_a_prefix_restore_reads_only_the_segments_that_can_hold_its_keys(fan, monkeypatch):  # noqa: F811
    fan.seed({**FILES, **{f"s/{i:02d}.bin": os.urandom(300) for i in range(8)}})
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "4")
    plan = fanout.plan_configured()
    deliver(fan.messages())
    assert plan["shards"] == 5  # r/00-03, r/04-07, r/08-s/01, s/02-05, s/06-07
    report, calls = counted_restore(monkeypatch, fan.source + "s/")
    assert (report.skipped, report.complete) == (8, True)
    assert data_keys(calls["s3 stat"]) == []
    segments = [k.rsplit("/", 1)[1] for k in calls["s3 open"] if "/index/0" in k]
    assert segments == ["000002.jsonl.gz", "000003.jsonl.gz", "000004.jsonl.gz"]
