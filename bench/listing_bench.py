"""Combined listing: speed against raw SDK listings, STS calls under load, peak memory.

`python -m bench.listing_bench` — seeds 5,000 Azure + 5,000 S3 objects (once), then:
1. full combined listing (limit 5000, paged) vs the slower of the two raw-SDK listings,
   measured in the same run with the same identity and credentials (target <= 1.2x);
2. STS calls made by 200 concurrent listing requests in one fresh process (must be 1);
3. peak memory of the listing function paging 10,000 objects with limit 5000, measured in
   a fresh process against a baseline process that does everything but the listing;
4. client CPU of one Azure listing of 5,000 blobs (with and without user metadata) against
   the request it made before, with `include=metadata` (bench/listing_cpu.py).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench import listing_cpu
from bench.report import machine, write_section
from bench.stack import admin_clients, local_cloud

PREFIX = "bench-list/"
PER_CLOUD = 5000
ROUNDS = 7
ROOT = Path(__file__).resolve().parent.parent


def seed(env: dict[str, str]) -> None:
    container, s3 = admin_clients(env)
    have_azure = sum(1 for _ in container.list_blobs(name_starts_with=PREFIX))
    have_s3 = sum(p.get("KeyCount", 0) for p in s3.get_paginator("list_objects_v2").paginate(
        Bucket=env["S3_BUCKET"], Prefix=PREFIX))
    keys = [f"{PREFIX}{i // 100:03d}/object-{i:05d}.bin" for i in range(PER_CLOUD)]
    listing_cpu.seed_with_metadata(container, PER_CLOUD)
    with ThreadPoolExecutor(32) as pool:
        if have_azure < PER_CLOUD:
            list(pool.map(lambda k: container.upload_blob(k, b"a" * 64, overwrite=True), keys))
        if have_s3 < PER_CLOUD:
            list(pool.map(lambda k: s3.put_object(Bucket=env["S3_BUCKET"], Key=k, Body=b"s" * 64), keys))


def measure_speed() -> dict[str, float]:
    from crosscloud import listing
    from crosscloud.stores import factory

    azure, s3 = factory.azure_store(), factory.s3_store()
    container = azure._container  # the raw SDK client, same identity  # noqa: SLF001
    client = s3.client  # the raw boto3 client, same federated credentials

    def raw_azure() -> int:
        return sum(1 for _ in container.list_blobs(name_starts_with=PREFIX, results_per_page=5000))

    def raw_s3() -> int:
        return sum(p.get("KeyCount", 0) for p in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3.bucket, Prefix=PREFIX))

    def ours() -> int:
        count, cursor = 0, None
        while True:
            page = listing.list_objects({"azure": azure, "s3": s3}, prefix=PREFIX, limit=5000, cursor=cursor)
            count += len(page.items)
            cursor = page.next_cursor
            if not cursor:
                return count

    def raw_both() -> int:
        with ThreadPoolExecutor(2) as pool:
            return sum(pool.map(lambda fn: fn(), (raw_azure, raw_s3)))

    raw_s3(), raw_azure(), ours()  # warm: tokens, STS, connection pools
    runs: dict[str, list[float]] = {"azure": [], "s3": [], "both": [], "ours": []}
    for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits all alike
        for name, fn in (("azure", raw_azure), ("s3", raw_s3), ("both", raw_both), ("ours", ours)):
            started = time.perf_counter()
            count = fn()
            runs[name].append(time.perf_counter() - started)
            assert count == (2 if name in ("both", "ours") else 1) * PER_CLOUD, (name, count)
    per_round = [o / max(a, s) for a, s, o in zip(runs["azure"], runs["s3"], runs["ours"], strict=True)]
    result = {name: statistics.median(times) for name, times in runs.items()}
    result["ratio"] = result["ours"] / max(result["azure"], result["s3"])
    result["ratio_both"] = result["ours"] / result["both"]
    result["ratio_min"], result["ratio_max"] = min(per_round), max(per_round)
    return result


STS_PROBE = """
import json, sys, azure.functions as func
from concurrent.futures import ThreadPoolExecutor
from devstack import envfile
envfile.apply()
from blueprints.objects import list_objects
def one(_):
    req = func.HttpRequest("GET", "http://localhost/api/objects", params={"prefix": sys.argv[1], "limit": "100"},
                           body=b"")
    return list_objects(req).status_code
with ThreadPoolExecutor(max_workers=50) as pool:
    codes = list(pool.map(one, range(200)))
print(json.dumps({"ok": codes.count(200)}))
"""

MEMORY_PROBE = """
import json, resource, sys, tracemalloc, azure.functions as func
from devstack import envfile
envfile.apply()
from blueprints.objects import list_objects
traced = sys.argv[2] == "traced"
if traced:
    tracemalloc.start()
def call(**params):
    return json.loads(list_objects(func.HttpRequest("GET", "http://localhost/api/objects", params=params,
                                                    body=b"")).get_body())
call(prefix=sys.argv[1], limit="1")  # identity, STS, clients: set up in both runs
baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if traced:
    tracemalloc.reset_peak()
count, cursor, pages = 0, None, 0
while True:
    page = call(prefix=sys.argv[1], limit="5000", **({"cursor": cursor} if cursor else {}))
    count += len(page["items"]); pages += 1
    cursor = page["next_cursor"]
    if not cursor:
        break
print(json.dumps({"count": count, "pages": pages,
                  "traced_peak": tracemalloc.get_traced_memory()[1] if traced else None,
                  "rss_before": baseline_rss * 1024,
                  "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _probe(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    with local_cloud() as env:
        print("seeding 5,000 + 5,000 objects (once) ...", flush=True)
        seed(env)
        speed = measure_speed()
        print(f"speed: {speed}", flush=True)
        from crosscloud.stores import factory

        cpu = listing_cpu.measure(factory.azure_store(), {"plain": PREFIX, "meta": listing_cpu.META_PREFIX},
                                  PER_CLOUD, ROUNDS)
        print(f"cpu: {cpu}", flush=True)
        stats_url = env["DEVSTACK_STATS_URL"]
        before = requests.get(stats_url, timeout=5).json().get("aws:AssumeRoleWithWebIdentity:ok", 0)
        sts = _probe(STS_PROBE, PREFIX)
        sts_calls = requests.get(stats_url, timeout=5).json().get("aws:AssumeRoleWithWebIdentity:ok", 0) - before
        print(f"sts: {sts_calls} calls for {sts['ok']} requests", flush=True)
        mem = _probe(MEMORY_PROBE, PREFIX, "rss")
        mem["traced_peak"] = _probe(MEMORY_PROBE, PREFIX, "traced")["traced_peak"]
        print(f"memory: {mem}", flush=True)
    mib = 1024 * 1024
    section = f"""## Combined listing (issue 3)

{machine()}; {PER_CLOUD:,} Azure blobs + {PER_CLOUD:,} S3 objects; median of {ROUNDS} interleaved rounds.

| measurement | result | target |
|---|---|---|
| raw Azure SDK listing (`list_blobs`, 5,000 per page) | {speed['azure']:.3f} s | baseline |
| raw S3 listing (`list_objects_v2` paginator, 1,000 per page) | {speed['s3']:.3f} s | baseline |
| both raw listings at once (two threads: the same work as ours) | {speed['both']:.3f} s | same-work baseline |
| crosscloud combined listing, limit 5000, all pages | {speed['ours']:.3f} s | |
| ratio to the slower raw listing (medians; per-round range) | **{speed['ratio']:.2f}x** ({speed['ratio_min']:.2f}-{speed['ratio_max']:.2f}) | <= 1.2x |
| ratio to both raw listings at once | **{speed['ratio_both']:.2f}x** | |
| STS calls for 200 concurrent listing requests, one fresh process | **{sts_calls}** ({sts['ok']}/200 answered 200) | exactly 1 |
| peak Python allocations (tracemalloc) while paging 10,000 objects, limit 5000 | {mem['traced_peak'] / mib:.1f} MiB | bounded by one page |
| process peak RSS: set up (identity, STS, clients) / after paging 10,000 | {mem['rss_before'] / mib:.0f} MiB / {mem['rss_peak'] / mib:.0f} MiB | |

**What a listing asks for (issue 11).** Client CPU (this process; Azurite runs apart) of one
Azure listing of {PER_CLOUD:,} blobs in 5,000-blob pages, before: `include=metadata` and
every property parsed; after: no `include`, only key, size, last-modified and ETag parsed.
Median of {ROUNDS} interleaved rounds.

| blobs | CPU before | CPU after | CPU saved | wall before / after |
|---|---|---|---|---|
| no user metadata | {cpu['plain']['cpu_before']:.3f} s | {cpu['plain']['cpu_after']:.3f} s | **{cpu['plain']['saved']:.0%}** | {cpu['plain']['wall_before']:.3f} s / {cpu['plain']['wall_after']:.3f} s |
| four metadata pairs each | {cpu['meta']['cpu_before']:.3f} s | {cpu['meta']['cpu_after']:.3f} s | **{cpu['meta']['saved']:.0%}** | {cpu['meta']['wall_before']:.3f} s / {cpu['meta']['wall_after']:.3f} s |

Wall time falls further ({1 - cpu['plain']['wall_after'] / cpu['plain']['wall_before']:.0%} and {1 - cpu['meta']['wall_after'] / cpu['meta']['wall_before']:.0%}) than client CPU: Azurite, on the
same CPUs, no longer reads and serialises each blob's metadata. Against Azure that work is
the service's, but the response is smaller either way.

**Reading the ratio.** On this 2-CPU machine Azurite, moto and the client share the CPUs, so
listing both clouds at once is slower than listing either alone: the same-work baseline
(both raw SDK listings in two threads) shows what concurrency costs here before any of our
code runs. Against it the combined listing is at parity or better; against the slower
cloud alone it misses the 1.2x target. What the combined listing adds is bounded: S3
resumes exactly with `StartAfter`, Azure with `startFrom`, a cloud's next page is
prefetched only while the merge will drain that cloud first, and a page returns as soon
as `limit` objects are merged, so at most the rest of one partly returned page per cloud
is read twice. Azure pages are parsed on the SDK's fast path (the generated client with
the model deserializer off, as `list_blob_names` does): `list_blobs`' deserializer costs
~0.35 ms of CPU per blob, ten times the request itself. Memory is bounded by the page
(`limit`) plus one prefetched page per cloud, not by the data set.
"""
    print(f"wrote {write_section('listing', section)}")


if __name__ == "__main__":
    main()
