"""Fan-out planning in steps against the local cloud: a plan that outlives one invocation.

A container too large to list within one invocation is planned by several steps: the first
(here `plan_configured`, as the timer or `POST /api/backup` runs it) and plan step messages
on the shard queue, run by the queue-triggered function. The tests shrink a step to one
listing page of a few keys (`planning.STEP_SECONDS = 0`, `planning.PAGE_SIZE`), so a couple
of dozen blobs take several steps; the queue is drained in-process as in test_fanout.py.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest

from crosscloud.backup import fanout, planning
from crosscloud.backup.lease import LEASE_NAME
from crosscloud.backup.range import KeyRange
from crosscloud.errors import UpstreamError
from crosscloud.settings import Settings
from crosscloud.stores import factory
from tests.integration.calls import count_calls, data_keys
from tests.integration.test_fanout import Fan, deliver, fan  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
FILES = {f"f/{i:02d}.bin": os.urandom(700 + i) for i in range(23)}


@pytest.fixture
def steps(fan, monkeypatch) -> Fan:  # noqa: F811 - the fixture imported above
    """Each planning step lists one page of 4 keys and then hands over; shards of 3 objects."""
    monkeypatch.setattr(planning, "STEP_SECONDS", 0.0)
    monkeypatch.setattr(planning, "PAGE_SIZE", 4)
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "3")
    fan.seed(FILES)
    return fan


def drain(scope: Fan) -> list[dict[str, Any]]:
    """Run every message on the queue (plan steps and shards alike) until it is empty, as one
    host would; returns the messages run, decoded."""
    ran = []
    while batch := scope.messages():
        for message in batch:
            ran.append(json.loads(message.content))
            deliver([message])
            scope.queue.delete_message(message)
    return ran


def tasks(scope: Fan, run_id: str) -> list[dict[str, Any]]:
    """The run's shard tasks in order, as written before their messages were sent."""
    found = []
    while (task := scope.reserved(f"runs/{run_id}/tasks/{len(found):06d}.json")) is not None:
        found.append(task)
    return found


def ranges_of(written: list[dict[str, Any]]) -> list[KeyRange]:
    return [KeyRange.from_json(json.loads(t["body"])["range"]) for t in written]


def assert_cover_the_key_space(ranges: list[KeyRange]) -> None:
    assert ranges[0].start_after is None
    assert ranges[-1].end is None
    assert all(a.end == b.start_after for a, b in zip(ranges, ranges[1:], strict=False))  # no gap, no overlap


def test_a_plan_too_long_for_one_invocation_continues_in_plan_steps_and_copies_everything(
        steps, monkeypatch, caplog):
    """The first step returns the plan so far; plan step messages cut the rest, each after the
    last task's range; the step that reaches the end writes the plan; one report, all copied."""
    caplog.set_level(logging.INFO, logger="crosscloud.backup.report")
    first = fanout.plan_configured()
    assert first["planning"] == "continues"
    assert (first["status"], first["shards"], first["objects"]) == ("planning", 2, 4)  # one page: 3 + 1
    assert steps.reserved(f"runs/{first['run_id']}/plan.json") is None

    ran = drain(steps)
    plan_steps = [m for m in ran if m.get("kind") == "plan"]
    assert len(plan_steps) >= 2  # three steps at least: the first and two continuations
    assert [m["next"] for m in plan_steps] == sorted(m["next"] for m in plan_steps)
    written = tasks(steps, first["run_id"])
    ranges = ranges_of(written)
    assert_cover_the_key_space(ranges)
    assert [json.loads(t["body"])["n"] for t in written] == list(range(len(written)))  # 0..N-1, no gaps
    plan = steps.reserved(f"runs/{first['run_id']}/plan.json")
    assert (plan["status"], plan["shards"], plan["objects"]) == ("planned", len(written), len(FILES))
    assert plan["stop_reason"] is None
    assert sorted(m["n"] for m in ran if "kind" not in m) == list(range(len(written)))  # each shard sent once

    report = steps.reserved(f"runs/{first['run_id']}/report.json")
    assert (report["copied"], report["failed_count"], report["complete"]) == (len(FILES), 0, True)
    assert steps.data_keys() == set(FILES)
    steps.assert_identical(list(FILES))
    lines = [r.getMessage() for r in caplog.records if r.name == "crosscloud.backup.report"]
    assert [json.loads(line)["run_id"] for line in lines] == [first["run_id"]]
    lease = json.loads(steps.s3.get_object(Bucket=steps.bucket, Key=steps.dest + LEASE_NAME)["Body"].read())
    assert lease["released"]


def test_a_step_that_fails_after_writing_a_task_runs_again_and_never_cuts_a_shard_twice(steps, monkeypatch):
    """The queue refuses the first shard message of a continuation step, after its task was
    written: the step fails (the host retries it). Meanwhile a blob lands inside that task's
    range. The retry re-sends the task as written (the shard lists its range when it runs, so
    it copies the new blob too) and cuts on after it; the same step delivered once more after
    the run completed changes nothing."""
    first = fanout.plan_configured()
    messages = steps.messages()
    [step_message] = [m for m in messages if json.loads(m.content).get("kind") == "plan"]
    step = planning.PlanStep.from_message(step_message.content)
    assert step.next == 2
    queue = factory.shard_queue(Settings(), os.environ["BACKUP_QUEUE_NAME"])
    real_send, refused = queue.send_message, []

    def refuse_once(body: str, *args: Any, **kwargs: Any) -> Any:
        if not refused and json.loads(body).get("n") == step.next:
            refused.append(body)
            raise UpstreamError("the queue service refused the message (injected)", status=503)
        return real_send(body, *args, **kwargs)

    monkeypatch.setattr(queue, "send_message", refuse_once)
    with pytest.raises(UpstreamError):
        deliver([step_message])
    before = tasks(steps, first["run_id"])
    assert len(before) >= 3  # task 2 was written before its send failed
    assert steps.reserved(f"runs/{first['run_id']}/planning.error")["reason"].startswith("the queue service")
    inside = ranges_of(before)[2]
    newcomer = f"f/{inside.end[len(steps.source) + 2:-4]}+.bin"  # sorts just before the range's end
    assert inside.contains(steps.source + newcomer, str.encode)
    steps.seed({newcomer: b"arrived between two attempts"})

    deliver([step_message], dequeue_count=2)  # the host's retry of the same message
    deliver([m for m in messages if m is not step_message])  # the first step's shards
    for message in messages:
        steps.queue.delete_message(message)
    drain(steps)
    after = tasks(steps, first["run_id"])
    assert after[:len(before)] == before  # no task rewritten: the cut never changed under a queued shard
    assert_cover_the_key_space(ranges_of(after))
    report = steps.reserved(f"runs/{first['run_id']}/report.json")
    assert (report["copied"], report["complete"]) == (len(FILES) + 1, True)
    steps.assert_identical([*FILES, newcomer])

    puts = count_calls(monkeypatch, factory.s3_store(backup=True), "put")
    deliver([step_message], dequeue_count=3)  # a late duplicate: the plan is written, nothing to do
    drain(steps)
    assert tasks(steps, first["run_id"]) == after
    assert data_keys(puts) == []
    assert steps.reserved(f"runs/{first['run_id']}/report.json") == report


def test_a_poisoned_plan_step_fails_the_run_with_a_report_and_the_next_run_copies_the_rest(steps, monkeypatch):
    """A continuation step fails every attempt (the queue refuses its shard messages) until the
    host moves it to the poison queue: the poison function records the plan failed, the
    shards already queued stop (one that ran before reports as usual), the last report
    completes the run as failed, and the next run backs everything up."""
    from blueprints.backup import backup_shard_poison

    first = fanout.plan_configured()
    messages = steps.messages()
    [step_message] = [m for m in messages if json.loads(m.content).get("kind") == "plan"]
    shard_messages = sorted((m for m in messages if m is not step_message), key=lambda m: json.loads(m.content)["n"])
    deliver(shard_messages[:1])  # shard 0 copies before planning goes wrong
    queue = factory.shard_queue(Settings(), os.environ["BACKUP_QUEUE_NAME"])

    def refuse(body: str, *args: Any, **kwargs: Any) -> Any:
        raise UpstreamError("the queue service refused the message (injected)", status=503)

    monkeypatch.setattr(queue, "send_message", refuse)
    for attempt in (1, 2):
        with pytest.raises(UpstreamError):
            deliver([step_message], dequeue_count=attempt)
    import azure.functions.queue as fq

    backup_shard_poison(fq.QueueMessage(id=step_message.id, body=step_message.content))
    steps.queue.delete_message(step_message)  # the host moved it to the poison queue
    plan = steps.reserved(f"runs/{first['run_id']}/plan.json")
    assert (plan["status"], plan["error"]) == ("failed", "PlanStepPoisoned")
    assert "poison queue; last attempt: the queue service refused" in plan["stop_reason"]
    cut = tasks(steps, first["run_id"])
    assert plan["shards"] == len(cut) >= 3
    deliver(shard_messages[1:])  # queued before the failure: they stop without copying
    for message in shard_messages:
        steps.queue.delete_message(message)

    report = steps.reserved(f"runs/{first['run_id']}/report.json")
    assert (report["complete"], report["copied"], report["failed_count"]) == (False, 3, 0)
    assert report["pending"] == sum(json.loads(t["body"])["objects"] for t in cut[1:])
    assert report["stop_reason"].startswith(f"failed while planning, after {len(cut)} shard(s) were cut")
    results = [steps.reserved(f"runs/{first['run_id']}/shards/{n:06d}.json")["status"] for n in range(len(cut))]
    assert results == ["done"] + ["cancelled"] * (len(cut) - 1)
    assert json.loads(steps.s3.get_object(Bucket=steps.bucket, Key=steps.dest + LEASE_NAME)["Body"].read())["released"]

    monkeypatch.undo()  # the queue takes messages again, planning has its usual budget
    for key, value in {"BACKUP_SOURCE_PREFIX": steps.source, "BACKUP_S3_PREFIX": steps.dest,
                       "BACKUP_PART_SIZE_MB": "5", "BACKUP_QUEUE_NAME": steps.queue.queue_name,
                       "BACKUP_FANOUT": "queue"}.items():
        monkeypatch.setenv(key, value)
    again = fanout.plan_configured()
    assert "planning" not in again
    drain(steps)
    final = steps.reserved(f"runs/{again['run_id']}/report.json")
    assert (final["complete"], final["copied"], final["skipped"]) == (True, len(FILES) - 3, 3)
    steps.assert_identical(list(FILES))


def test_a_step_of_a_run_whose_lease_was_taken_over_records_the_plan_failed(steps):
    """A run that outlived BACKUP_FANOUT_RUN_HOURS: another run took the lease over. Its next
    plan step cuts nothing and records the plan failed; its queued shards stop; the report is
    written, and the lease (the other run's) is left alone."""
    first = fanout.plan_configured()
    other = {"run_id": "a-later-run", "holder": "elsewhere", "released": False, "expires": "2999-01-01T00:00:00Z",
             "expires_epoch": 32472144000.0}
    steps.s3.put_object(Bucket=steps.bucket, Key=steps.dest + LEASE_NAME, Body=json.dumps(other).encode())
    messages = steps.messages()
    [step_message] = [m for m in messages if json.loads(m.content).get("kind") == "plan"]
    assert planning.PlanStep.from_message(step_message.content) == \
        planning.PlanStep(first["run_id"], 2, 4, first["bytes"])
    deliver([step_message])
    deliver([m for m in messages if m is not step_message])  # the shards the first step queued
    plan = steps.reserved(f"runs/{first['run_id']}/plan.json")
    assert (plan["status"], plan["error"], plan["shards"]) == ("failed", "LeaseLost", 2)
    assert "run a-later-run took its lease over" in plan["stop_reason"]
    report = steps.reserved(f"runs/{first['run_id']}/report.json")
    assert (report["complete"], report["copied"], report["pending"]) == (False, 0, 4)
    assert len(tasks(steps, first["run_id"])) == 2
    lease = json.loads(steps.s3.get_object(Bucket=steps.bucket, Key=steps.dest + LEASE_NAME)["Body"].read())
    assert lease == other


def test_the_tail_past_a_full_listing_page_is_planned_by_a_plan_step_when_the_budget_is_spent(fan, monkeypatch):  # noqa: F811
    """With the real listing page (5,000 keys, the most Azure returns) and a first step whose
    budget is spent on it: the key after the page is planned by the plan step message, not
    left to a next run that would plan from the start and stop at the same place again."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"p/{i:05d}" for i in range(5001)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: fan.azure.upload_blob(fan.source + name, b"", overwrite=True), names))
    first = fanout.plan_configured(max_seconds=0)
    assert (first.get("planning"), first["shards"], first["objects"]) == ("continues", 1, 5000)
    [step_message] = [m for m in fan.messages() if json.loads(m.content).get("kind") == "plan"]
    deliver([step_message])
    plan = fan.reserved(f"runs/{first['run_id']}/plan.json")
    assert (plan["status"], plan["shards"], plan["objects"], plan["stop_reason"]) == ("planned", 2, 5001, None)
    last = ranges_of(tasks(fan, first["run_id"]))[-1]
    assert (last.start_after, last.end) == (fan.source + names[4999], None)


def test_one_plan_step_delivered_twice_at_once_cuts_each_shard_once(steps, monkeypatch):
    """Two hosts handed the same plan step at once: task n is created by one of them only
    (`If-None-Match: *`); the other re-sends what exists or stops. However they interleave,
    the tasks stay contiguous, every object is copied once, and the run reports once."""
    from concurrent.futures import ThreadPoolExecutor

    first = fanout.plan_configured()
    messages = steps.messages()
    [step_message] = [m for m in messages if json.loads(m.content).get("kind") == "plan"]
    puts = count_calls(monkeypatch, factory.s3_store(backup=True), "put")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda attempt: deliver([step_message], dequeue_count=attempt), (1, 2)))
    deliver([m for m in messages if m is not step_message])
    for message in messages:
        steps.queue.delete_message(message)
    drain(steps)
    written = tasks(steps, first["run_id"])
    assert_cover_the_key_space(ranges_of(written))
    assert sum(json.loads(t["body"])["objects"] for t in written) == len(FILES)
    report = steps.reserved(f"runs/{first['run_id']}/report.json")
    assert (report["copied"], report["complete"]) == (len(FILES), True)
    assert sorted(data_keys(puts)) == sorted(steps.dest + steps.source + name for name in FILES)  # once each
    steps.assert_identical(list(FILES))
