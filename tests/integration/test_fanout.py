"""Fan-out backup against the local cloud: Azurite's queue service, Azurite blobs -> moto.

Each test has its own queue (BACKUP_QUEUE_NAME, created with the stack's admin key as infra/
creates it in Azure), source prefix and destination prefix. The in-process tests drain the
queue themselves and hand each message to the queue-triggered function; the host tests run
`python -m devstack serve` processes that poll the queue the way the Functions host does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import azure.functions.queue as fq
import pytest
from azure.storage.queue import QueueClient

from crosscloud.backup import fanout
from crosscloud.backup.lease import LEASE_NAME, LeaseHeld
from crosscloud.backup.range import KeyRange
from crosscloud.stores import factory
from crosscloud.stores.base import utf16_order
from tests.integration.calls import count_calls, data_keys

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@dataclass
class Fan:
    source: str
    dest: str
    bucket: str
    azure: Any
    s3: Any
    queue: QueueClient  # admin access, for the test's own look at the queue
    poison: QueueClient

    def seed(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            self.azure.upload_blob(self.source + name, data, overwrite=True, max_concurrency=4)

    def data_keys(self) -> set[str]:
        keys = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.dest):
            keys |= {o["Key"][len(self.dest):] for o in page.get("Contents", [])}
        return {k[len(self.source):] for k in keys if not k.startswith(".crosscloud/")}

    def assert_identical(self, names: list[str]) -> None:
        for name in names:
            source = self.azure.download_blob(self.source + name).readall()
            copy = self.s3.get_object(Bucket=self.bucket, Key=self.dest + self.source + name)["Body"].read()
            assert hashlib.sha256(copy).digest() == hashlib.sha256(source).digest(), name

    def reserved(self, name: str) -> Any:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.dest}.crosscloud/{name}")["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def uploads(self) -> list[dict[str, Any]]:
        return self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=self.dest).get("Uploads", [])

    def messages(self) -> list[Any]:
        """Everything visible in the queue now (taken for 60 s), decoded."""
        return list(self.queue.receive_messages(max_messages=32, visibility_timeout=60))


def admin_queue(env: dict[str, str], name: str) -> QueueClient:
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy

    return QueueClient.from_connection_string(
        env["DEVSTACK_AZURE_CONNECTION_STRING"], name, connection_verify=env["REQUESTS_CA_BUNDLE"],
        message_encode_policy=BinaryBase64EncodePolicy(), message_decode_policy=BinaryBase64DecodePolicy())


@pytest.fixture
def fan(env, monkeypatch, prefix, azure_admin, aws_admin) -> Any:
    name = f"t-{uuid.uuid4().hex[:12]}"
    queue, poison = admin_queue(env, name), admin_queue(env, name + "-poison")
    queue.create_queue()
    poison.create_queue()
    dest = f"{env['BACKUP_S3_PREFIX']}{prefix}"
    for key, value in {"BACKUP_SOURCE_PREFIX": prefix, "BACKUP_S3_PREFIX": dest, "BACKUP_PART_SIZE_MB": "5",
                       "BACKUP_QUEUE_NAME": name, "BACKUP_FANOUT": "queue"}.items():
        monkeypatch.setenv(key, value)
    yield Fan(prefix, dest, env["BACKUP_S3_BUCKET"], azure_admin, aws_admin, queue, poison)
    queue.delete_queue()
    poison.delete_queue()


def deliver(messages: list[Any], dequeue_count: int = 1) -> None:
    """Hand messages to the queue-triggered function as the host would (decoded body)."""
    from blueprints.backup import backup_shard

    for message in messages:
        backup_shard(fq.QueueMessage(id=message.id, body=message.content, dequeue_count=dequeue_count,
                                     pop_receipt=message.pop_receipt))


FILES = {f"f/{i:02d}.bin": os.urandom(1000 + i) for i in range(23)}


def test_planning_cuts_bounded_contiguous_shards_and_enqueues_one_message_each(fan, monkeypatch):
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "5")
    fan.seed({**FILES, "big.bin": os.urandom(3 * MIB)})
    monkeypatch.setenv("BACKUP_SHARD_MB", "2")  # the 3 MiB blob closes a shard on its own bytes
    plan = fanout.plan_configured()
    messages = fan.messages()
    tasks = sorted((json.loads(m.content) for m in messages), key=lambda t: t["n"])
    assert plan["shards"] == len(tasks) == 6
    assert plan["objects"] == 24
    assert [t["objects"] for t in tasks] == [1, 5, 5, 5, 5, 3]  # big.bin sorts first and fills a shard
    ranges = [KeyRange.from_json(t["range"]) for t in tasks]
    assert ranges[0].start_after is None
    assert ranges[-1].end is None
    assert all(a.end == b.start_after for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous
    assert all(len(base64.b64encode(m.content)) < 64 * 1024 for m in messages)
    assert fan.reserved(f"runs/{plan['run_id']}/plan.json")["shards"] == 6
    lease = json.loads(fan.s3.get_object(Bucket=fan.bucket, Key=fan.dest + LEASE_NAME)["Body"].read())
    assert lease["run_id"] == plan["run_id"]
    assert not lease["released"]
    with pytest.raises(LeaseHeld):
        fanout.plan_configured()  # a second run waits for this one


def test_shards_copy_their_ranges_and_the_last_writes_one_report(fan, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="crosscloud.backup.report")
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "4")
    fan.seed({**FILES, "large.bin": os.urandom(11 * MIB)})
    plan = fanout.plan_configured()
    deliver(fan.messages())
    report = fan.reserved(f"runs/{plan['run_id']}/report.json")
    assert (report["copied"], report["failed_count"], report["complete"]) == (24, 0, True)
    assert fan.data_keys() == {*FILES, "large.bin"}
    fan.assert_identical([*FILES, "large.bin"])
    lines = [r.getMessage() for r in caplog.records if r.name == "crosscloud.backup.report"]
    assert len(lines) == 1
    assert json.loads(lines[0])["run_id"] == plan["run_id"]
    lease = json.loads(fan.s3.get_object(Bucket=fan.bucket, Key=fan.dest + LEASE_NAME)["Body"].read())
    assert lease["released"]

    # The rerun hands each shard the segments covering its range: no per-object HEAD.
    fan.seed({"f/03.bin": os.urandom(1003), "f/new.bin": b"new"})
    heads = count_calls(monkeypatch, factory.s3_store(backup=True), "stat")
    rerun = fanout.plan_configured()
    deliver(fan.messages())
    again = fan.reserved(f"runs/{rerun['run_id']}/report.json")
    assert (again["copied"], again["skipped"], again["complete"]) == (2, 23, True)
    assert data_keys(heads) == []
    fan.assert_identical(["f/03.bin", "f/new.bin"])


def test_a_redelivered_message_is_harmless(fan, monkeypatch):
    """Queue delivery is at least once: the same shard message twice copies once, reports once."""
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "100")
    fan.seed(FILES)
    plan = fanout.plan_configured()
    [message] = fan.messages()
    puts = count_calls(monkeypatch, factory.s3_store(backup=True), "put")
    deliver([message])
    first = fan.reserved(f"runs/{plan['run_id']}/report.json")
    copies = data_keys(puts)
    deliver([message], dequeue_count=2)
    assert data_keys(puts) == copies  # nothing copied again
    assert fan.reserved(f"runs/{plan['run_id']}/report.json") == first
    assert first["copied"] == len(FILES)
    assert first["complete"]


def test_keys_that_utf16_and_utf8_order_differently_are_never_copied_blindly(fan, monkeypatch):
    """A shard's range is cut in Azure's UTF-16 order: the shard (`a😀`, `a～`] holds `a～`, but
    at S3 (UTF-8) `a～` sorts before `a😀`, outside the range the shard walks there. The rerun
    looks it up with one HEAD instead of copying it again blindly; nothing is copied."""
    names = ["a0", "a😀", "a～", "b", "😀"]
    fan.seed({n: n.encode() * 3 for n in names})
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "1")
    first = fanout.plan_configured()
    messages = fan.messages()
    tasks = sorted((json.loads(m.content) for m in messages), key=lambda t: t["n"])
    ends = [KeyRange.from_json(t["range"]).end for t in tasks]
    in_order = sorted((fan.source + n for n in names), key=utf16_order)
    assert ends == [*in_order[:-1], None]  # one key per shard, Azure's order; the last one open-ended
    assert ends[1:3] == [fan.source + "a😀", fan.source + "a～"]
    deliver(messages)
    assert fan.reserved(f"runs/{first['run_id']}/report.json")["copied"] == len(names)

    store = factory.s3_store(backup=True)
    calls = {method: count_calls(monkeypatch, store, method) for method in ("put", "stat")}
    second = fanout.plan_configured()
    deliver(fan.messages())
    report = fan.reserved(f"runs/{second['run_id']}/report.json")
    assert (report["copied"], report["skipped"], report["complete"]) == (0, len(names), True)
    assert data_keys(calls["put"]) == []
    assert data_keys(calls["stat"]) == [fan.dest + fan.source + "a～"]
    fan.assert_identical(names)


def test_http_and_timer_only_plan_in_fan_out_mode(fan, monkeypatch):
    """POST /api/backup answers 202 with the plan (the shards run on the queue, not within the
    HTTP request's 230 s); the timer plans likewise; a dry run still runs in-process."""
    import azure.functions as func
    from azure.functions.timer import TimerRequest

    from blueprints.backup import backup_now, backup_timer

    fan.seed({"a.txt": b"alpha", "b.txt": b"beta"})
    dry = backup_now(func.HttpRequest("POST", "http://localhost/api/backup?dry_run=true", body=b"",
                                      params={"dry_run": "true"}))
    assert (dry.status_code, json.loads(dry.get_body())["copied"]) == (200, 2)
    assert fan.messages() == []

    planned = backup_now(func.HttpRequest("POST", "http://localhost/api/backup", body=b""))
    assert planned.status_code == 202
    plan = json.loads(planned.get_body())
    assert (plan["shards"], plan["objects"]) == (1, 2)
    assert fan.data_keys() == set()  # nothing copied yet
    deliver(fan.messages())
    assert fan.reserved(f"runs/{plan['run_id']}/report.json")["copied"] == 2

    backup_timer(TimerRequest(past_due=False))
    [message] = fan.messages()
    assert json.loads(message.content)["run"] != plan["run_id"]


def test_two_deliveries_of_one_shard_at_once_copy_it_once(fan, monkeypatch):
    """Two hosts handed the same shard at once (a duplicate delivery): the shard lease lets one
    copy while the other waits for its result; every object is written once, one report."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("BACKUP_LEASE_SECONDS", "30")  # the holder renews in time even on a loaded machine
    fan.seed(FILES)
    plan = fanout.plan_configured()
    [message] = fan.messages()
    puts = count_calls(monkeypatch, factory.s3_store(backup=True), "put")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: deliver([message]), range(2)))
    copies = data_keys(puts)
    assert sorted(copies) == sorted(fan.dest + fan.source + name for name in FILES)  # each exactly once
    assert fan.reserved(f"runs/{plan['run_id']}/report.json")["copied"] == len(FILES)


def test_a_retried_shard_starts_from_the_segment_its_stopped_attempt_wrote(fan, monkeypatch):
    """A shard that stopped early (here: its time budget) fails so the host retries it; the
    retry reads the index segment the stopped attempt wrote, so what was copied needs no HEAD."""
    from dataclasses import replace

    from crosscloud.backup import shards
    from crosscloud.backup.config import BackupConfig
    from crosscloud.settings import Settings

    small = {f"s/{i}.txt": os.urandom(500) for i in range(5)}
    fan.seed({**small, "z-large.bin": os.urandom(24 * MIB)})
    fanout.plan_configured()
    [message] = fan.messages()
    task = shards.ShardTask.from_message(message.content)
    source, dest, config = shards.configured()
    hurried = replace(config, time_budget_s=4.0, assumed_mib_s=4)  # 24 MiB at 4 MiB/s: never started in 4 s
    with pytest.raises(shards.ShardIncomplete, match="1 object"):
        shards.run_shard(source, dest, hurried, task)
    assert fan.data_keys() == set(small)

    heads = count_calls(monkeypatch, dest, "stat")
    result = shards.run_shard(source, dest, BackupConfig.from_settings(Settings()), task, dequeue_count=2)
    assert (result["report"]["copied"], result["report"]["skipped"]) == (1, len(small))
    assert data_keys(heads) == []
    fan.assert_identical([*small, "z-large.bin"])
