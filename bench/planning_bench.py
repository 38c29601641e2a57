"""Fan-out planning: one step against steps that continue on the queue, and the durable cut's cost.

`python -m bench.planning_bench [--rounds N]` — seeds `bench-planning/` once (20,000 empty
blobs: four listing pages of 5,000), then per round plans a fan-out run into a fresh
destination prefix, in-process, without copying anything (the shard messages are left on a
queue of the bench's own, deleted at the end):
- one step: `fanout.plan_run` with the default budget lists all four pages in one go;
- one page a step: `planning.STEP_SECONDS = 0`, so each step hands over after a page; the
  plan step messages are taken off the queue and run back to back (`fanout.continue_run`),
  as a host would run them, without the queue's polling delay.
Each with shards of 100 objects (200 shards: a task write and a message each) and of 10,000
(2 shards). The time spent in task writes (`runs/<run>/tasks/<n>.json`, create-only PUTs, on
the cutting thread's path) is summed separately. Results go to docs/benchmarks.md between
the `planning` markers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.fanout_bench import queue
from bench.report import machine, write_section
from bench.stack import admin_clients, local_cloud

SOURCE = "bench-planning/"
COUNT = 20_000
WAYS = [("one step", 100), ("one page a step", 100), ("one step", 10_000), ("one page a step", 10_000)]


def seed(env: dict[str, str]) -> None:
    container, _ = admin_clients(env)
    present = {b.name for b in container.list_blobs(name_starts_with=SOURCE)}
    missing = [k for k in (f"{SOURCE}{i:06d}" for i in range(COUNT)) if k not in present]
    if missing:
        print(f"seeding {len(missing)} empty blobs under {SOURCE}", file=sys.stderr, flush=True)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: container.upload_blob(k, b"", overwrite=True), missing))


def decoding_queue(name: str) -> Any:
    """The bench's own look at the queue (shared key), decoding the base64 the app sends."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    return QueueClient.from_connection_string(os.environ["DEVSTACK_AZURE_CONNECTION_STRING"], name,
                                              connection_verify=os.environ["REQUESTS_CA_BUNDLE"],
                                              message_decode_policy=TextBase64DecodePolicy())


def one(way: str, shard_objects: int, queue_name: str) -> dict[str, Any]:
    """Plan one run into a fresh prefix: wall seconds, steps, shards, seconds in task writes."""
    from crosscloud.backup import fanout, planning
    from crosscloud.backup.config import BackupConfig
    from crosscloud.settings import Settings
    from crosscloud.stores import factory

    settings = Settings()
    config = BackupConfig.from_settings(settings)
    config = dataclasses.replace(config, source_prefix=SOURCE,
                                 prefix=f"{config.prefix}bench-planning-{uuid.uuid4().hex[:8]}/")
    fan = fanout.FanoutConfig(shard_objects=shard_objects, queue_name=queue_name)
    source, dest = factory.azure_store(settings, bulk=True), factory.s3_store(settings, backup=True)
    shard_queue, admin = factory.shard_queue(settings, queue_name), decoding_queue(queue_name)
    admin.clear_messages()  # the last run's shard messages
    in_tasks = [0.0]
    real_put = dest.put

    def timed_put(key: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_put(key, *args, **kwargs)
        finally:
            if "/tasks/" in key:
                in_tasks[0] += time.perf_counter() - started

    dest.put = timed_put  # type: ignore[method-assign]
    planning.STEP_SECONDS = 0.0 if way == "one page a step" else None
    load = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        plan: dict[str, Any] | None = fanout.plan_run(source, dest, shard_queue, config, fan)
        steps = 1
        while plan is not None and plan.get("planning") == "continues":
            batch = list(admin.receive_messages(max_messages=32, visibility_timeout=600))
            if not batch:
                raise SystemExit(f"{way}: planning continues, but no plan step message is on the queue")
            for message in (m for m in batch if planning.is_plan_step(m.content)):
                plan = fanout.continue_run(source, dest, shard_queue, config, fan,
                                           planning.PlanStep.from_message(message.content))
                admin.delete_message(message)
                steps += 1
        seconds = time.perf_counter() - started
    finally:
        planning.STEP_SECONDS = None
        del dest.put
    if plan is None or plan.get("objects") != COUNT:
        raise SystemExit(f"{way}: planned {plan}")
    return {"way": way, "shard_objects": shard_objects, "seconds": seconds, "steps": steps,
            "shards": plan["shards"], "tasks_s": in_tasks[0], "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    runs: list[dict[str, Any]] = []
    with local_cloud() as env:
        seed(env)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        queue(env, name).create_queue()
        os.environ["BACKUP_QUEUE_NAME"] = name
        try:
            for round_ in range(args.rounds):
                for way, size in (WAYS if round_ % 2 == 0 else WAYS[::-1]):
                    run = one(way, size, name)
                    print(f"round {round_ + 1}: {way}, shards of {size}: {run['seconds']:.2f} s, {run['steps']} "
                          f"step(s), {run['shards']} shards (load {run['load']:.1f})", flush=True)
                    runs.append(run)
        finally:
            queue(env, name).delete_queue()
    rows = []
    for way, size in WAYS:
        mine = [r for r in runs if (r["way"], r["shard_objects"]) == (way, size)]
        median = statistics.median(r["seconds"] for r in mine)
        tasks = statistics.median(r["tasks_s"] for r in mine)
        rows.append(f"| {way} | {size:,} | {mine[0]['steps']} | {mine[0]['shards']} | {median:.2f} | "
                    f"{min(r['seconds'] for r in mine):.2f}-{max(r['seconds'] for r in mine):.2f} | "
                    f"{COUNT / median:,.0f} | {tasks:.2f} ({1000 * tasks / mine[0]['shards']:.0f} ms each) |")
    loads = [r["load"] for r in runs]
    medians = {(way, size): statistics.median(r["seconds"] for r in runs if (r["way"], r["shard_objects"]) == (way, size))
               for way, size in WAYS}
    steps = max(r["steps"] for r in runs)
    per_step = (medians["one page a step", 10_000] - medians["one step", 10_000]) / (steps - 1)
    write_section("planning", f"""## Fan-out planning in steps (issue 13)

`python -m bench.planning_bench --rounds {args.rounds}` on {machine()}, {dt.date.today():%Y-%m-%d}: planning a
fan-out run over {COUNT:,} empty blobs (four listing pages of 5,000) into a fresh prefix, in-process,
nothing copied; median of {args.rounds} (the order alternates per round; 1-minute load average
{min(loads):.1f}-{max(loads):.1f} at the starts). "One page a step" hands over after every page and runs
the plan step messages back to back, without the queue's polling delay.

| way | objects per shard | steps | shards | median s | range s | objects/s | of which task writes, s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Each step beyond the first cost {per_step:.2f} s here (shards of 10,000: the difference of the medians over
{steps - 1} extra steps): a few requests besides its pages (the run header, the lease, the last task, the
previous index, the plan's absence, its own message) and a page fetched ahead while its last one was
cut, which it does not use. A continued listing (Azure's `startFrom` is inclusive) brings 4,999 new
names per page, hence {steps} steps for {COUNT:,}. A shard costs its task write (one create-only PUT, on
the cutting thread, while the next page is fetched) and its message (sent by 8 threads). With the
default budget a step lists for 1,500 s (hundreds of pages) before it hands over, and at the default
10,000 objects per shard a task write comes once per two pages, so on Azure, where a page of 5,000
names and a PUT to S3 from another cloud each take longer than here, the durable cut and the
hand-overs add little to the listing pass that bounds planning.
""")
    print(json.dumps(runs), file=sys.stderr)


if __name__ == "__main__":
    main()
