"""Unit tests of the fan-out's own parts: key ranges, shard cutting, shard messages, the
combined report, and devstack's reading of the host's queue settings."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from crosscloud.backup import planning
from crosscloud.backup.config import BackupConfig
from crosscloud.backup.fanout import FanoutConfig
from crosscloud.backup.planning import PlanStep, cut, is_plan_step
from crosscloud.backup.range import KeyRange
from crosscloud.backup.runstate import combine
from crosscloud.backup.shards import ShardTask
from crosscloud.errors import SettingError
from crosscloud.settings import Settings
from crosscloud.stores.base import ObjectInfo, Page, utf8_order, utf16_order
from devstack.queue_host import QueueOptions, resolve, timespan
from tests.unit.fakes import MemoryStore

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def test_a_range_is_start_exclusive_end_inclusive_in_the_given_order():
    r = KeyRange("b", "d")
    assert [k for k in "abcde" if r.contains(k, utf8_order)] == ["c", "d"]
    assert KeyRange().contains("anything", utf8_order)
    # In UTF-16 `a😀` sorts before `a～`; in UTF-8 after it.
    r16 = KeyRange("a0", "a😀")
    assert r16.contains("a😀", utf16_order)
    assert not r16.contains("a～", utf16_order)
    assert r16.contains("a～", utf8_order)


def test_range_pages_drop_keys_up_to_the_start_and_stop_after_the_end():
    def info(key: str) -> ObjectInfo:
        return ObjectInfo(key, 1, EPOCH, "e")

    pages = iter([Page([info("a"), info("b")], "t1"), Page([info("c"), info("d")], "t2"), Page([info("e")], None)])
    out = list(KeyRange("a", "c").pages(pages, utf8_order))
    assert [[i.key for i in p.items] for p in out] == [["b"], ["c"]]
    assert out[-1].next_token is None


def test_ranges_overlap():
    assert KeyRange("b", "d").overlaps(KeyRange("c", None), utf8_order)
    assert not KeyRange("b", "d").overlaps(KeyRange("d", "f"), utf8_order)
    assert not KeyRange("d", "f").overlaps(KeyRange(None, "d"), utf8_order)
    assert KeyRange(None, None).overlaps(KeyRange("x", "y"), utf8_order)


def test_cut_bounds_objects_and_bytes_and_leaves_the_last_range_open():
    store = MemoryStore("s3", {f"k{i:02d}": b"x" * (100 if i == 4 else 1) for i in range(10)})
    fan = FanoutConfig(shard_objects=3, shard_bytes=50)
    shards = list(cut(store, BackupConfig(), fan, deadline=float("inf")))
    assert [(r.start_after, r.end, n) for r, n, _ in shards] == [
        (None, "k02", 3), ("k02", "k04", 2), ("k04", "k07", 3), ("k07", None, 2)]


def test_cut_of_an_empty_source_is_one_open_shard():
    shards = list(cut(MemoryStore("s3", {}), BackupConfig(), FanoutConfig(), deadline=float("inf")))
    assert [(r, n) for r, n, _ in shards] == [(KeyRange(None, None), 0)]


def test_cut_holds_a_full_range_back_so_the_last_one_is_open_even_when_it_fills_exactly():
    store = MemoryStore("s3", {f"k{i}": b"x" for i in range(6)})
    shards = list(cut(store, BackupConfig(), FanoutConfig(shard_objects=3), deadline=float("inf"), page_size=2))
    assert [(r.start_after, r.end, n) for r, n, _ in shards] == [(None, "k2", 3), ("k2", None, 3)]


def test_cut_at_its_deadline_yields_what_a_page_gave_and_stops_unless_the_listing_ended():
    store = MemoryStore("s3", {f"k{i}": b"x" for i in range(7)}, page_size=4)
    fan = FanoutConfig(shard_objects=3)
    ranges = cut(store, BackupConfig(), fan, deadline=0, start_after="k0", page_size=4)
    got = [(r.start_after, r.end, n) for _, (r, n, _) in zip(range(2), ranges, strict=False)]
    assert got == [("k0", "k3", 3), ("k3", "k4", 1)]  # deadline long gone: one page (4 keys)...
    with pytest.raises(planning._CutDeadline):  # the step's own deadline
        next(ranges)  # ...then it hands over
    tail = [(r.start_after, r.end, n) for r, n, _ in cut(store, BackupConfig(), fan, 0, "k4", page_size=4)]
    assert tail == [("k4", None, 2)]  # the last page: no deadline, the open-ended range
    assert [(r.start_after, r.end, n) for r, n, _ in cut(store, BackupConfig(), fan, 0, "k6")] == [("k6", None, 0)]


def test_a_real_timeout_while_cutting_fails_the_step_instead_of_handing_over():
    """A socket's TimeoutError from the listing is an error (the host retries the step, then
    poisons it), never the step's own deadline: no hand-over message, the error raised."""

    class TimingOut(MemoryStore):
        def list_pages(self, prefix: str = "", page_size: int | None = None,
                       start_after: str | None = None) -> Any:
            pages = super().list_pages(prefix, page_size, start_after)
            yield next(pages)
            raise TimeoutError("The read operation timed out")

    class Queue:
        sent: list[str] = []

        def send_message(self, body: str) -> None:
            self.sent.append(body)

    source, dest, queue = TimingOut("azure", {f"k{i}": b"x" for i in range(9)}), MemoryStore("s3"), Queue()
    header = {"run_id": "r", "started": "2026-01-01T00:00:00Z", "order": source.listing_order}
    step = planning.Step(source, dest, queue, BackupConfig(), FanoutConfig(shard_objects=2), header, PlanStep("r", 0))
    with pytest.raises(TimeoutError, match="timed out"):
        step.run(deadline=float("inf"))
    assert not [m for m in queue.sent if is_plan_step(m)]


def test_the_first_steps_safety_message_shows_after_its_budget_and_a_margin_within_the_queues_limit():
    """Put Message's visibilitytimeout: at most 7 days, and below the message's time-to-live."""
    assert planning.safety_delay(1500) == 1500 + 300 + 1
    assert planning.safety_delay(0.2) == 301
    assert planning.safety_delay(30 * 24 * 3600) == planning.MAX_VISIBILITY_S < 7 * 24 * 3600


def test_plan_step_and_shard_messages_are_never_taken_for_each_other():
    step = PlanStep("run-1", 4, 120, 9000)
    assert PlanStep.from_message(step.to_message().encode()) == step
    assert is_plan_step(step.to_message())
    shard = ShardTask("run-1", 3, KeyRange("a", None)).to_message()
    assert not is_plan_step(shard)
    assert not is_plan_step(b"not json")
    resend = PlanStep("run-1", 7, 1, 2, step=4)  # re-sends step 4's tasks from 7 on
    assert PlanStep.from_message(resend.to_message()) == resend
    assert (resend.mark, step.mark, json.loads(step.to_message())["step"]) == (4, 4, 4)
    with pytest.raises(ValueError, match="malformed backup shard message: a 'plan' message"):
        ShardTask.from_message(step.to_message())
    assert PlanStep.from_message('{"v": 1, "kind": "plan", "run": "r", "next": 0, "objects": 0, "bytes": 0}') == \
        PlanStep("r", 0)  # the first step's safety message
    for bad in (shard,
                '{"v": 1, "kind": "plan", "run": "r", "next": 2, "objects": -1, "bytes": 0}',
                '{"v": 1, "kind": "plan", "run": "r", "next": true, "objects": 0, "bytes": 0}',
                '{"v": 1, "kind": "plan", "run": "r", "next": 2, "objects": 0, "bytes": 0, "step": 3}'):
        with pytest.raises(ValueError, match="malformed backup plan step message"):
            PlanStep.from_message(bad)


def test_a_shard_message_round_trips_and_malformed_ones_are_refused():
    task = ShardTask("run-1", 3, KeyRange("a😀", None), 10, 1000, ((KeyRange(None, "b"), "seg/0"),))
    assert ShardTask.from_message(task.to_message().encode()) == task
    for bad in (b"not json", b'{"v": 2}', b'{"v": 1, "run": "r", "n": "x", "range": {}}',
                b'{"v": 1, "run": "r", "n": 1, "range": {"start_after": 5}}'):
        with pytest.raises(ValueError, match="malformed backup shard message"):
            ShardTask.from_message(bad)


def test_fanout_settings_are_validated():
    assert FanoutConfig.from_settings(Settings({})).queue_name == "crosscloud-backup-shards"
    with pytest.raises(SettingError, match="BACKUP_QUEUE_NAME"):
        FanoutConfig.from_settings(Settings({"BACKUP_QUEUE_NAME": "Bad_Name"}))
    with pytest.raises(SettingError, match="BACKUP_SHARD_OBJECTS"):
        FanoutConfig.from_settings(Settings({"BACKUP_SHARD_OBJECTS": "0"}))


def test_the_combined_report_counts_a_failed_shard_and_never_drops_it():
    plan = {"run_id": "r", "source": "s", "destination": "d", "started": "2024-01-01T00:00:00.000Z"}
    done = {"n": 0, "status": "done", "range": {"start_after": None, "end": "m"},
            "report": {"copied": 3, "skipped": 1, "bytes_copied": 30, "failed": [], "failed_count": 0}}
    failed = {"n": 1, "status": "failed", "range": {"start_after": "m", "end": None}, "objects": 7, "bytes": 70,
              "reason": "moved to the poison queue"}
    report = combine(plan, [failed, done])
    assert (report.copied, report.skipped, report.failed_count) == (3, 1, 1)
    assert (report.pending, report.pending_bytes) == (7, 70)
    assert not report.complete
    assert report.failed[0].key == "shard 1 (keys after 'm' through None)"
    assert "poison" in report.stop_reason
    assert combine(plan, [done]).complete


def test_queue_options_follow_host_json_defaults_and_app_setting_overrides():
    """The host's documented defaults (batchSize 16, newBatchThreshold batchSize/2,
    maxDequeueCount 5, visibilityTimeout 0, maxPollingInterval 1 min), host.json over them,
    and `AzureFunctionsJobHost__extensions__queues__*` app settings over host.json."""
    assert QueueOptions.from_host({}, {}) == QueueOptions()
    host = {"extensions": {"queues": {"batchSize": 4, "visibilityTimeout": "00:00:30"}}}
    options = QueueOptions.from_host(host, {"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2"})
    assert (options.batch_size, options.new_batch_threshold, options.visibility_timeout_s,
            options.max_dequeue_count) == (4, 2, 30.0, 2)
    assert timespan("1.02:03:04.5") == 86400 + 7384.5


def test_binding_expressions_resolve_from_app_settings():
    assert resolve("%Q%-poison", {"Q": "shards"}) == "shards-poison"
    with pytest.raises(KeyError, match="Q"):
        resolve("%Q%", {})


def test_the_queue_connection_setting_is_named_when_missing_or_malformed():
    from crosscloud.stores import factory

    with pytest.raises(SettingError, match="CROSSCLOUD_QUEUE__queueServiceUri is not set"):
        factory.shard_queue(Settings({}))
    for bad in ("http://acct.queue.core.windows.net", "https://acct.queue.core.windows.net/?sv=x&sig=y"):
        with pytest.raises(SettingError, match="CROSSCLOUD_QUEUE__queueServiceUri is malformed") as caught:
            factory.shard_queue(Settings({"CROSSCLOUD_QUEUE__queueServiceUri": bad}))
        assert "sig=" not in str(caught.value)
    from crosscloud.backup.fanout import enabled

    with pytest.raises(SettingError, match="BACKUP_FANOUT"):
        enabled(Settings({"BACKUP_FANOUT": "yes"}))


def test_a_cancelled_shard_counts_its_objects_pending_under_the_plans_failure():
    plan = {"run_id": "r", "source": "s", "destination": "d", "started": "2024-01-01T00:00:00.000Z",
            "status": "failed", "stop_reason": "failed while planning, after 1 shard(s) were queued (X: y)"}
    cancelled = {"n": 0, "status": "cancelled", "range": {"start_after": None, "end": None}, "objects": 5,
                 "bytes": 50, "reason": "its run failed while planning"}
    report = combine(plan, [cancelled])
    assert (report.pending, report.pending_bytes, report.failed_count) == (5, 50, 0)
    assert report.stop_reason == plan["stop_reason"]
    assert not report.complete


class RefusingQueue:
    def send_message(self, body: str, visibility_timeout: int | None = None) -> dict[str, Any]:
        if is_plan_step(body) and visibility_timeout:  # the first step's safety message: taken
            return {"id": "safety"}
        raise ConnectionError("queue unreachable")  # not a crosscloud error: only its name is told


def test_a_plan_whose_first_message_fails_is_recorded_failed_and_over_at_once():
    """Nothing may have been queued, so no shard will ever report: the planner completes the run
    (report written, lease ended) and raises PlanFailed naming the error, not its text."""
    from crosscloud.backup.fanout import PlanFailed, plan_run
    from crosscloud.backup.lease import LEASE_NAME
    from crosscloud.backup.runstate import RunPaths, get_json
    from tests.unit.test_backup import CONFIG, FakeStore

    source, dest = FakeStore("azure"), FakeStore("s3")
    for i in range(5):
        source.seed(f"k{i}", b"x" * i)
    with pytest.raises(PlanFailed, match=r"after 0 shard\(s\) were queued \(ConnectionError\);") as failed:
        plan_run(source, dest, RefusingQueue(), CONFIG, FanoutConfig(shard_objects=2), run_id="r1")
    assert failed.value.status == 500
    paths = RunPaths(CONFIG.prefix, "r1")
    plan = get_json(dest, paths.plan)
    assert (plan["status"], plan["error"]) == ("failed", "ConnectionError")
    assert plan["shards"] >= 1  # the cut stops at the first failed send (the sends run ahead of it)
    results = [get_json(dest, paths.result(n)) for n in range(plan["shards"])]
    assert {r["status"] for r in results} == {"cancelled"}
    report = get_json(dest, paths.report)
    assert (report["complete"], report["pending"]) == (False, sum(r["objects"] for r in results))
    assert get_json(dest, CONFIG.prefix + LEASE_NAME)["released"]
