"""Fan-out planning's faults against the local cloud: old plan steps delivered again, a step
poisoned while its shards copy, late results, and a first step killed mid-cut.

The same small steps as test_fanout_planning.py (one listing page of 4 keys a step, shards
of 3 objects); the queue is drained in-process.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from crosscloud.backup import fanout
from crosscloud.errors import UpstreamError
from crosscloud.settings import Settings
from crosscloud.stores import factory
from tests.integration.test_fanout import deliver, fan  # noqa: F401 - the fixture
from tests.integration.test_fanout_planning import (  # noqa: F401 - steps: the fixture
    FILES,
    assert_cover_the_key_space,
    drain,
    ranges_of,
    steps,
    tasks,
)

pytestmark = pytest.mark.integration


def test_an_old_plan_step_delivered_again_re_sends_only_its_own_tasks_and_hands_over_at_its_deadline(
        steps, monkeypatch):  # noqa: F811 - the fixture
    """Step 2 cut tasks 2-3 and handed over to step 4, which cut on; then step 2's message comes
    back (its host was killed before completing it). It re-sends only the tasks step 2 cut, never
    step 4's (thousands, in a large run), and at its deadline it hands the rest of its own
    re-send to a message (`"step": 2`), which stops quietly at step 4's first task."""
    first = fanout.plan_configured()
    taken = steps.messages()  # each taken for 60 s: run (and deleted) at the end
    [step2] = [m for m in taken if json.loads(m.content).get("kind") == "plan"]
    deliver([step2])
    taken += steps.messages()
    [step4] = [m for m in taken if json.loads(m.content).get("kind") == "plan" and m is not step2]
    deliver([step4])
    assert [json.loads(t["body"])["n"] for t in tasks(steps, first["run_id"])] == [0, 1, 2, 3, 4, 5]
    assert [t["step"] for t in tasks(steps, first["run_id"])] == [0, 0, 2, 2, 4, 4]
    queue = factory.shard_queue(Settings(), os.environ["BACKUP_QUEUE_NAME"])
    real_send, sent = queue.send_message, []

    def recording(body: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(json.loads(body))
        return real_send(body, *args, **kwargs)

    monkeypatch.setattr(queue, "send_message", recording)
    deliver([step2], dequeue_count=2)  # the deadline (0 s here) is long gone after one re-send
    assert [m.get("n", m.get("kind")) for m in sent] == [2, "plan"]
    assert (sent[1]["next"], sent[1]["step"]) == (3, 2)
    taken += steps.messages()
    [again] = [m for m in taken if json.loads(m.content).get("kind") == "plan" and json.loads(m.content)["next"] == 3]
    sent.clear()
    deliver([again])
    assert [m.get("n", m.get("kind")) for m in sent] == [3]  # then task 4: step 4's, whose message carries on
    assert steps.reserved(f"runs/{first['run_id']}/plan.json") is None
    assert [json.loads(t["body"])["n"] for t in tasks(steps, first["run_id"])] == [0, 1, 2, 3, 4, 5]

    for message in taken:  # the shards and step 6's message, and the old steps once more (nothing to do)
        deliver([message])
        steps.queue.delete_message(message)
    drain(steps)
    written = tasks(steps, first["run_id"])
    assert_cover_the_key_space(ranges_of(written))
    report = steps.reserved(f"runs/{first['run_id']}/report.json")
    assert (report["copied"], report["complete"]) == (len(FILES), True)
    steps.assert_identical(list(FILES))


def test_a_poisoned_plan_step_leaves_a_shard_that_is_copying_to_report_as_usual(steps, monkeypatch):  # noqa: F811
    """Step 2 cut tasks 2 and 3, sent shard 2 and failed sending shard 3, every attempt. Shard 2
    is copying (its host holds the shard lease) when the step lands in the poison queue: the
    run is recorded failed, the shard the step never sent (3) is cancelled, shard 2 is not:
    it finishes its copy and reports `done`, and its copies count in the run's report."""
    from blueprints.backup import backup_shard_poison

    first = fanout.plan_configured()
    taken = steps.messages()
    [step2] = [m for m in taken if json.loads(m.content).get("kind") == "plan"]
    queue = factory.shard_queue(Settings(), os.environ["BACKUP_QUEUE_NAME"])
    real_send = queue.send_message

    def refuse_shard_3(body: str, *args: Any, **kwargs: Any) -> Any:
        if json.loads(body).get("n") == 3:
            raise UpstreamError("the queue service refused the message (injected)", status=503)
        return real_send(body, *args, **kwargs)

    monkeypatch.setattr(queue, "send_message", refuse_shard_3)
    with pytest.raises(UpstreamError):
        deliver([step2])  # as every attempt until the host gives up on it
    taken += steps.messages()
    shard2 = next(m for m in taken if json.loads(m.content).get("n") == 2)
    dest = factory.s3_store(backup=True)
    real_put, poisoned = dest.put, []

    def poison_midway(key: str, *args: Any, **kwargs: Any) -> Any:
        if ".crosscloud/" not in key and not poisoned:  # shard 2's first copy: the step is poisoned now
            poisoned.append(key)
            import azure.functions.queue as fq

            backup_shard_poison(fq.QueueMessage(id=step2.id, body=step2.content))
        return real_put(key, *args, **kwargs)

    monkeypatch.setattr(dest, "put", poison_midway)
    deliver([shard2])
    assert poisoned
    plan = steps.reserved(f"runs/{first['run_id']}/plan.json")
    assert (plan["status"], plan["error"], plan["shards"]) == ("failed", "PlanStepPoisoned", 4)
    result = lambda n: steps.reserved(f"runs/{first['run_id']}/shards/{n:06d}.json")  # noqa: E731
    assert (result(2)["status"], result(3)["status"]) == ("done", "cancelled")
    assert steps.reserved(f"runs/{first['run_id']}/report.json") is None  # shards 0 and 1 have not reported
    for message in taken:
        deliver([message])
        steps.queue.delete_message(message)
    assert [result(n)["status"] for n in range(4)] == ["cancelled", "cancelled", "done", "cancelled"]
    report = steps.reserved(f"runs/{first['run_id']}/report.json")
    assert (report["complete"], report["copied"], report["pending"]) == (False, 3, 3 + 1 + 1)
    assert steps.data_keys() == {"f/04.bin", "f/05.bin", "f/06.bin"}  # shard 2's range: keys 4-6
    steps.assert_identical(["f/04.bin", "f/05.bin", "f/06.bin"])


def test_a_result_numbered_past_the_plans_shards_never_stands_in_for_a_missing_one(fan):  # noqa: F811
    """A failed plan counted shards 0-1; a duplicate step cut task 5 afterwards, whose shard read
    the failed plan and reported `cancelled`. Two results exist while shard 1 is still copying:
    the run is not complete until shard 1 reports, and shard 5 stays out of the report."""
    from crosscloud.backup.runstate import RunPaths, finish_if_complete, put_json
    from crosscloud.backup.shards import configured

    _, dest, config = configured()
    paths = RunPaths(config.prefix, "late-run")
    put_json(dest, paths.plan, {"run_id": "late-run", "source": "s", "destination": "d", "order": "utf-8",
                                "started": "2026-01-01T00:00:00Z", "status": "failed", "error": "PlanStepPoisoned",
                                "stop_reason": "failed while planning", "shards": 2, "objects": 4, "bytes": 40})

    def result(n: int, status: str, objects: int) -> dict[str, Any]:
        return {"n": n, "status": status, "range": {"start_after": None, "end": None}, "objects": objects,
                "bytes": 10 * objects, "index": None, "reason": "its run failed while planning", "report": None}

    put_json(dest, paths.result(0), result(0, "cancelled", 3))
    put_json(dest, paths.result(5), result(5, "cancelled", 7))
    assert finish_if_complete(dest, config.prefix, "late-run") is None
    assert fan.reserved("runs/late-run/report.json") is None
    put_json(dest, paths.result(1), result(1, "cancelled", 1))
    assert finish_if_complete(dest, config.prefix, "late-run") is not None
    report = fan.reserved("runs/late-run/report.json")
    assert (report["complete"], report["pending"]) == (False, 3 + 1)  # shard 5's objects are no part of it


def test_a_first_step_killed_mid_cut_is_carried_on_by_its_safety_message(steps, monkeypatch):  # noqa: F811
    """The host running the first (inline) step dies after cutting a task: nothing after the kill
    runs (no failure recorded, no hand-over). The safety plan step (`next` 0) it sent after the
    run header, invisible for the step's budget and a margin (3 s here), shows up, re-sends
    the step's task and cuts on: the run completes, byte-exact. A first step that ends
    normally withdraws its safety message."""
    import time

    from crosscloud.backup import planning

    monkeypatch.setattr(planning, "SAFETY_MARGIN_S", 2.0)
    real_put_json, written = planning.put_json, []

    def killed_at_the_second_task(store: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if "/tasks/" in key:
            written.append(key)
            if len(written) == 2:
                raise SystemExit("killed")  # as the host's process ending mid-step
        return real_put_json(store, key, *args, **kwargs)

    monkeypatch.setattr(planning, "put_json", killed_at_the_second_task)
    monkeypatch.setattr(fanout, "_record_failure", lambda *args, **kwargs: True)  # a kill records nothing
    with pytest.raises(SystemExit):
        fanout.plan_configured()
    monkeypatch.setattr(planning, "put_json", real_put_json)
    run_id = written[0].split("/")[-3]
    visible = [json.loads(m.content) for m in steps.queue.peek_messages(max_messages=32)]
    assert [m.get("n", m.get("kind")) for m in visible] == [0]  # shard 0 only: no hand-over
    time.sleep(3.5)
    visible = [json.loads(m.content) for m in steps.queue.peek_messages(max_messages=32)]
    [safety] = [m for m in visible if m.get("kind") == "plan"]
    assert (safety["run"], safety["next"], safety["step"]) == (run_id, 0, 0)

    drain(steps)
    written_tasks = tasks(steps, run_id)
    assert_cover_the_key_space(ranges_of(written_tasks))
    report = steps.reserved(f"runs/{run_id}/report.json")
    assert (report["copied"], report["failed_count"], report["complete"]) == (len(FILES), 0, True)
    steps.assert_identical(list(FILES))

    again = fanout.plan_configured()  # ends normally (hands over): its safety message is withdrawn
    assert again["planning"] == "continues"
    time.sleep(3.5)
    steps_now = [json.loads(m.content) for m in steps.queue.peek_messages(max_messages=32)]
    assert [m["next"] for m in steps_now if m.get("kind") == "plan"] == [again["shards"]]
