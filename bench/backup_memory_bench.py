"""Backup memory against the object count: peak RSS of a first copy and of a no-op rerun.

`python -m bench.backup_memory_bench [--counts 5000 50000]` seeds N tiny blobs under
`bench-mem/<N>/` (once), then runs `python -m crosscloud backup --json` as a child process
into a fresh prefix (first copy) and again (no-op rerun), reading the child's peak RSS
(VmHWM). The per-object slope between the two counts, extrapolated to 1,000,000 objects,
is what the design must keep under 256 MiB. The no-op rerun is also run in-process once,
counting the store calls, to show it sends no per-object request (no HEAD, no GET, no PUT).
Results go to docs/benchmarks.md between the `backup-memory` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tracemalloc
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.backup_bench import _timed
from bench.report import machine, write_section
from bench.stack import admin_clients, local_cloud

OBJECT_BYTES = 64


def seed(container: Any, prefix: str, count: int) -> None:
    present = sum(1 for _ in container.list_blobs(name_starts_with=prefix))
    if present >= count:
        return
    print(f"seeding {count} x {OBJECT_BYTES} B under {prefix}", file=sys.stderr, flush=True)
    keys = [f"{prefix}{i // 1000:03d}/object-{i:07d}" for i in range(count)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: container.upload_blob(k, k.encode().ljust(OBJECT_BYTES, b"."), overwrite=True),
                      keys))


def child_run(source: str, dest: str, expect_copied: int) -> tuple[float, float]:
    env = {**os.environ, "BACKUP_SOURCE_PREFIX": source, "BACKUP_S3_PREFIX": dest,
           "BACKUP_TIME_BUDGET_SECONDS": "3600"}
    seconds, rss, out, code = _timed([sys.executable, "-m", "crosscloud", "backup", "--json"], env)
    report = json.loads(out)
    if code or report["copied"] != expect_copied or report["failed_count"] or not report["complete"]:
        raise SystemExit(f"backup did not do what was measured: exit {code}, copied {report['copied']}")
    return seconds, rss


def counted_noop(source: str, dest: str) -> Counter[str]:
    """The no-op rerun in this process, counting what the stores were asked per kind, and the
    peak of the Python heap it allocated (tracemalloc; the SDKs' own caches included)."""
    from crosscloud.backup import run_configured
    from crosscloud.stores import factory

    os.environ.update(BACKUP_SOURCE_PREFIX=source, BACKUP_S3_PREFIX=dest)
    calls: Counter[str] = Counter()

    def counting(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    stores = (factory.azure_store(chunk_size=16 * 2**20), factory.s3_store(backup=True))
    methods = ("stat", "open", "put", "list_pages")
    for store in stores:
        for method in methods:
            setattr(store, method, counting(f"{store.name}.{method}", getattr(store, method)))
    tracemalloc.start()
    try:
        report = run_configured()
        calls["traced peak MiB"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    finally:
        tracemalloc.stop()
        for store in stores:
            for method in methods:
                delattr(store, method)  # back to the class's own method
    if report.copied:
        raise SystemExit("the no-op rerun copied something")
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[5000, 50000])
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    rows, peaks = [], {}
    with local_cloud() as env:
        container, _ = admin_clients(env)
        for count in args.counts:
            source = f"bench-mem/{count}/"
            seed(container, source, count)
            dest = f"{env['BACKUP_S3_PREFIX']}bench-mem/{uuid.uuid4().hex[:8]}/"
            first_s, first_rss = child_run(source, dest, count)
            noop_s, noop_rss = child_run(source, dest, 0)
            calls = counted_noop(source, dest)
            peaks[count] = (first_rss, noop_rss)
            traced = calls.pop("traced peak MiB")
            rows.append(f"| {count:,} | {first_s:.1f} s | {first_rss:.0f} MiB | {noop_s:.1f} s | {noop_rss:.0f} MiB | "
                        f"{traced} MiB | {', '.join(f'{k} {v}' for k, v in sorted(calls.items()))} |")
            print(rows[-1], file=sys.stderr, flush=True)
    # The slope is taken between the two largest counts: bounded buffers (the index's sort
    # run of 10,000 entries, its 8 MiB spool) are full there, as they are at a million.
    low, high = sorted(peaks)[-2:] if len(peaks) > 1 else (min(peaks), max(peaks))
    lines = ["## Backup memory against the object count (issue 13)", "",
             f"{machine()}; `python -m bench.backup_memory_bench`; objects of {OBJECT_BYTES} B; peak RSS is the "
             "backup process's VmHWM. The no-op rerun's store calls are counted in-process "
             "(per-object calls would be `stat`/`open`/`put`; the index is one `open` and one `put`).", "",
             "| objects | first copy | peak RSS | no-op rerun | peak RSS | no-op Python heap peak | store calls in the no-op rerun |",
             "|---|---|---|---|---|---|---|", *rows, ""]
    if high > low:
        for label, i in (("first copy", 0), ("no-op rerun", 1)):
            slope = (peaks[high][i] - peaks[low][i]) / (high - low)
            lines.append(f"- {label}: {slope * 1024 * 1024:.0f} bytes per object; extrapolated to 1,000,000 "
                         f"objects: {peaks[low][i] + slope * (1_000_000 - low):.0f} MiB (target: under 256 MiB).")
    write_section("backup-memory", "\n".join(lines))


if __name__ == "__main__":
    main()
