"""A fan-out plan that fails midway, against the local cloud: recorded, visible, nothing lost.

The failure is injected at the edge with a monkeypatch: the shard queue refuses messages
after some were sent, or the destination refuses the plan itself after every shard was
queued. The run must be recorded as failed before its lease ends, its queued shards must
stop without copying, `backup --fan-out --json` must exit non-zero naming the error, and the
next run must back everything up.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest

from crosscloud import cli
from crosscloud.backup import fanout
from crosscloud.backup.lease import LEASE_NAME
from crosscloud.errors import CrossCloudError, UpstreamError
from crosscloud.settings import Settings
from crosscloud.stores import factory
from tests.integration.calls import count_calls, data_keys
from tests.integration.test_fanout import deliver, fan  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
FILES = {f"f/{i:02d}.bin": os.urandom(900 + i) for i in range(23)}  # 6 shards of at most 4


def lease_of(scope: Any) -> dict[str, Any]:
    return json.loads(scope.s3.get_object(Bucket=scope.bucket, Key=scope.dest + LEASE_NAME)["Body"].read())


def test_a_queue_that_fails_midway_fails_the_run_its_queued_shards_stop_and_the_next_run_copies_all(
        fan, monkeypatch, capsys):  # noqa: F811
    """The queue takes 3 messages, then refuses. A host took shard messages while the plan was
    still being cut (one shard copies before the failure): it is accounted for in the report."""
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "4")
    fan.seed(FILES)
    queue = factory.shard_queue(Settings(), os.environ["BACKUP_QUEUE_NAME"])
    real_send, lock, sends = queue.send_message, threading.Lock(), []

    def failing_send(body: str, *args: Any, **kwargs: Any) -> Any:
        if json.loads(body).get("kind") == "plan":  # the first step's safety message
            return real_send(body, *args, **kwargs)
        with lock:
            sends.append(body)
            if len(sends) <= 3:
                return real_send(body, *args, **kwargs)
            if len(sends) == 4:  # a host copies one queued shard while planning goes on
                [taken] = fan.queue.receive_messages(max_messages=1, visibility_timeout=60)
                deliver([taken])
                fan.queue.delete_message(taken)
        raise UpstreamError("the queue service refused the message (injected)", status=503)

    monkeypatch.setattr(queue, "send_message", failing_send)
    assert cli.main(["backup", "--fan-out", "--json"]) == 1
    run_id = lease_of(fan)["run_id"]
    plan = fan.reserved(f"runs/{run_id}/plan.json")  # recorded, with the error's name
    assert plan is not None
    assert (plan["status"], plan["error"], plan["shards"]) == ("failed", "UpstreamError", 6)
    assert not lease_of(fan)["released"]  # the run is not over while a shard it queued may run
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]
    assert error["code"] == "backup_plan_failed"
    assert f"backup {run_id} failed while planning, after 3 shard(s) were queued (UpstreamError: the queue " \
           f"service refused the message (injected)); they stop without copying; the run's report follows " \
           f"once they have: .crosscloud/runs/{run_id}/report.json under the backup prefix" == error["message"]
    copied_by_the_early_shard = fan.data_keys()
    assert len(copied_by_the_early_shard) == 4

    puts = count_calls(monkeypatch, factory.s3_store(backup=True), "put")
    deliver(fan.messages())  # the other two queued shards: they stop without copying
    assert data_keys(puts) == []
    assert fan.data_keys() == copied_by_the_early_shard
    report = fan.reserved(f"runs/{run_id}/report.json")
    assert (report["complete"], report["copied"], report["failed_count"]) == (False, 4, 0)
    assert report["pending"] == 23 - 4  # the objects of the 5 cancelled shards
    assert report["stop_reason"].startswith("failed while planning, after 3 shard(s)")
    assert lease_of(fan)["released"]  # the last queued shard to report ended the run
    results = [fan.reserved(f"runs/{run_id}/shards/{n:06d}.json")["status"] for n in range(6)]
    assert sorted(results) == ["cancelled"] * 5 + ["done"]

    monkeypatch.undo()
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "4")
    for key, value in {"BACKUP_SOURCE_PREFIX": fan.source, "BACKUP_S3_PREFIX": fan.dest, "BACKUP_PART_SIZE_MB": "5",
                       "BACKUP_QUEUE_NAME": fan.queue.queue_name, "BACKUP_FANOUT": "queue"}.items():
        monkeypatch.setenv(key, value)
    again = fanout.plan_configured()  # nothing lost: the next run backs everything up
    deliver(fan.messages())
    final = fan.reserved(f"runs/{again['run_id']}/report.json")
    assert (final["complete"], final["copied"], final["skipped"]) == (True, 23 - 4, 4)
    fan.assert_identical(list(FILES))


def test_a_plan_the_destination_refuses_after_every_shard_was_queued_is_recorded_failed(
        fan, monkeypatch):  # noqa: F811
    """Every shard is queued, then writing plan.json fails once: the failure is written in its
    place, the shards stop without copying, and the last one completes the run as failed."""
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "10")
    fan.seed(FILES)
    store = factory.s3_store(backup=True)
    real_put, refused = store.put, []

    def refusing_put(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith("/plan.json") and not refused:
            refused.append(key)
            raise UpstreamError("the destination refused the write (injected)", status=503)
        return real_put(key, *args, **kwargs)

    monkeypatch.setattr(store, "put", refusing_put)
    with pytest.raises(CrossCloudError) as failed:
        fanout.plan_configured()
    run_id = refused[0].split("/")[-2]
    assert (fan.reserved(f"runs/{run_id}/plan.json") or {}).get("status") == "failed"
    deliver(fan.messages())
    assert fan.data_keys() == set()
    report = fan.reserved(f"runs/{run_id}/report.json")
    assert (report["complete"], report["copied"], report["pending"]) == (False, 0, 23)
    assert lease_of(fan)["released"]
    assert isinstance(failed.value, fanout.PlanFailed)
    assert "after 3 shard(s) were queued (UpstreamError: the destination refused" in failed.value.message
    assert failed.value.status == 503
