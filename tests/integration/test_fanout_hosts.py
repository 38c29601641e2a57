"""Fan-out through real `python -m devstack serve` hosts consuming one queue side by side.

Each test names the Functions host behaviour it relies on: several hosts (instances)
competing for one queue, a message kept invisible while its function runs and visible
again once a killed host stops renewing it, and a message moved to `<queue>-poison` after
maxDequeueCount failed attempts. Host settings are shortened for speed through the app
settings the host itself honours (`AzureFunctionsJobHost__extensions__queues__*`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crosscloud import cli
from crosscloud.backup import fanout
from tests.integration.test_fanout import MIB, fan  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
QUEUES = "AzureFunctionsJobHost__extensions__queues__"
FAST = {f"{QUEUES}maxPollingInterval": "00:00:01", f"{QUEUES}visibilityTimeout": "00:00:00"}


class Hosts:
    """`devstack serve` processes started by a test, each with its own log; all stopped at the end."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, **settings: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"serve-{port}.log"
        env = {**os.environ, **FAST, **settings}
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "devstack", "serve", "--port", str(port)], cwd=ROOT,
                                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[port] = proc
        wait_for(lambda: "backup_shard_poison: listening" in self.log(port), 30, f"host :{port} to listen")
        return proc

    def log(self, port: int) -> str:
        return (self.tmp / f"serve-{port}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def hosts(tmp_path, fan) -> Iterator[Hosts]:  # noqa: F811 - the fixture imported above
    running = Hosts(tmp_path)
    yield running
    running.stop()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ports() -> tuple[int, int]:
    base = 7081 + int(os.environ.get("DEVSTACK_PORT_OFFSET", "0"))  # beside the stack's own 7071 + offset
    return base, base + 1


def test_two_hosts_share_the_queue_and_the_run_completes(fan, hosts, monkeypatch):  # noqa: F811
    """Instances compete for one queue: each message is run by one of them, once."""
    files = {f"d/{i:02d}.bin": os.urandom(2000 + i) for i in range(24)}
    fan.seed(files)
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "3")
    # One message at a time, and both hosts polling often (an idle host backs off up to
    # maxPollingInterval), so neither can drain the queue before the other looks.
    one_at_a_time = {f"{QUEUES}batchSize": "1", f"{QUEUES}newBatchThreshold": "0",
                     f"{QUEUES}maxPollingInterval": "00:00:00.200"}
    a, b = ports()
    hosts.start(a, **one_at_a_time)
    hosts.start(b, **one_at_a_time)
    cli = subprocess.run([sys.executable, "-m", "crosscloud", "backup", "--fan-out", "--json", "--wait", "120"],
                         cwd=ROOT, env=dict(os.environ), capture_output=True, timeout=180)
    assert cli.returncode == 0, cli.stderr.decode()
    report = json.loads(cli.stdout)
    assert (report["copied"], report["failed_count"], report["complete"]) == (24, 0, True)
    fan.assert_identical(list(files))
    ran = [hosts.log(port).count("Executed 'Functions.backup_shard' (Succeeded") for port in (a, b)]
    assert sum(ran) == 8  # every shard once
    assert min(ran) >= 1, ran  # both hosts took part


def test_a_host_killed_mid_shard_its_message_returns_and_the_run_completes(fan, hosts, monkeypatch):  # noqa: F811
    """The host keeps a running message invisible (renewing its lease); killed, it stops
    renewing and the message becomes visible again for another instance."""
    big = os.urandom(48 * MIB)
    fan.seed({"huge.bin": big, "small.txt": b"small"})
    monkeypatch.setenv("BACKUP_LEASE_SECONDS", "3")  # the dead host's shard lease runs out soon
    key = fan.dest + fan.source + "huge.bin"
    a, b = ports()
    victim = hosts.start(a, DEVSTACK_QUEUE_LEASE_SECONDS="6", BACKUP_PART_CONCURRENCY="1")
    plan = fanout.plan_configured()

    def upload_with_a_part() -> bool:
        return any(u["Key"] == key and fan.s3.list_parts(Bucket=fan.bucket, Key=key, UploadId=u["UploadId"])
                   .get("Parts") for u in fan.uploads())

    wait_for(upload_with_a_part, 90, "the first host to upload a part")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    with pytest.raises(fan.s3.exceptions.ClientError):  # nothing visible: multipart completes atomically
        fan.s3.head_object(Bucket=fan.bucket, Key=key)

    hosts.start(b, DEVSTACK_QUEUE_LEASE_SECONDS="6")
    report = wait_for(lambda: fan.reserved(f"runs/{plan['run_id']}/report.json"), 120, "the run's report")
    assert (report["failed_count"], report["complete"]) == (0, True)
    assert report["copied"] >= 1
    assert report["incomplete_uploads_aborted"] >= 1  # the dead host's upload, cleaned up at completion
    assert fan.uploads() == []
    fan.assert_identical(["huge.bin", "small.txt"])
    assert "Executed 'Functions.backup_shard' (Succeeded" in hosts.log(b)


def test_a_shard_that_always_fails_lands_in_the_poison_queue_and_the_report(fan, hosts, monkeypatch):  # noqa: F811
    """After maxDequeueCount failed attempts the host moves the message to `<queue>-poison`;
    the poison-queue function records the shard, so the run completes as failed, not silently."""
    fan.seed({"never-fits.bin": os.urandom(33 * MIB)})  # 1 s budget at a cautious 32 MiB/s: never started
    monkeypatch.setenv("BACKUP_TIME_BUDGET_SECONDS", "1")
    a, _ = ports()
    hosts.start(a, **{f"{QUEUES}maxDequeueCount": "2"})
    cli = subprocess.run([sys.executable, "-m", "crosscloud", "backup", "--fan-out", "--json", "--wait", "120"],
                         cwd=ROOT, env=dict(os.environ), capture_output=True, timeout=180)
    assert cli.returncode == 1
    report = json.loads(cli.stdout)
    assert (report["complete"], report["failed_count"], report["pending"]) == (False, 1, 1)
    [failure] = report["failed"]
    assert failure["key"].startswith("shard 0 ")
    assert "poison queue" in failure["reason"]
    assert "1 object(s) pending" in failure["reason"]  # why its last attempt stopped
    log = hosts.log(a)
    assert log.count("Executed 'Functions.backup_shard' (Failed") == 2
    assert f"moved to {os.environ['BACKUP_QUEUE_NAME']}-poison" in log
    assert "Executed 'Functions.backup_shard_poison' (Succeeded" in log
    assert fan.poison.peek_messages() == []  # handled, not left behind


def test_planning_handed_over_on_the_queue_is_finished_by_a_host_and_the_run_completes(
        fan, hosts, monkeypatch, capsys):  # noqa: F811
    """`backup --fan-out` whose first plan step cuts one listing page: the plan step message is
    run by a host's queue trigger like a shard message (it cuts the rest and writes the plan),
    the two hosts copy every shard, and the CLI prints the one report; every object byte-exact."""
    from crosscloud.backup import planning

    files = {f"d/{i:02d}.bin": os.urandom(1500 + i) for i in range(24)}
    fan.seed(files)
    monkeypatch.setenv("BACKUP_SHARD_OBJECTS", "3")
    monkeypatch.setattr(planning, "PAGE_SIZE", 4)
    monkeypatch.setattr(planning, "STEP_SECONDS", 0.0)  # this process's step: one page, then the queue
    a, b = ports()
    hosts.start(a, **{f"{QUEUES}maxPollingInterval": "00:00:00.200"})
    hosts.start(b, **{f"{QUEUES}maxPollingInterval": "00:00:00.200"})
    assert cli.main(["backup", "--fan-out", "--json", "--wait", "120"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert re.search(r": [1-9]\d* shard\(s\) queued \(\d+ objects so far; planning continues in a queue message\)",
                     err), err
    assert (report["copied"], report["failed_count"], report["complete"]) == (24, 0, True)
    first = {"run_id": report["run_id"]}
    plan = fan.reserved(f"runs/{first['run_id']}/plan.json")
    assert (plan["status"], plan["objects"]) == ("planned", 24)
    ranges = [json.loads(fan.reserved(f"runs/{first['run_id']}/tasks/{n:06d}.json")["body"])["range"]
              for n in range(plan["shards"])]
    assert (ranges[0]["start_after"], ranges[-1]["end"]) == (None, None)
    assert all(r["end"] == after["start_after"] for r, after in zip(ranges, ranges[1:], strict=False))
    fan.assert_identical(list(files))
    ran = sum(hosts.log(port).count("Executed 'Functions.backup_shard' (Succeeded") for port in (a, b))
    assert ran == plan["shards"] + 1  # every shard once, and the one plan step
