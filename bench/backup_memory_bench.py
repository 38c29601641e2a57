"""Backup memory against the object count: peak RSS of a first copy and of a no-op rerun.

`python -m bench.backup_memory_bench [--counts 5000 50000 100000]` seeds N tiny blobs under
`bench-mem/<N>/` (once), then runs `python -m crosscloud backup --json` as a child process
into a fresh prefix (first copy) and again (no-op rerun), reading the child's peak RSS
(VmHWM) and its RSS curve (VmRSS every 0.5 s, reported at 25/50/75/100 % of the run's time).
The per-object slope between the two largest counts, extrapolated to 1,000,000 objects, is
what the design must keep under 256 MiB. The no-op rerun is also run in-process once,
counting the store calls, to show it sends no per-object request (no HEAD, no GET, no PUT).
The index written at the end of a run grows with the count up to its bounded upload; its
write for `--index-entries` objects (default 1,000,000, as a first copy records them) is
measured in a child process of its own, so the extrapolation does not rest on the slope
alone. Results go to docs/benchmarks.md between the `backup-memory` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import machine, write_section
from bench.stack import admin_clients, local_cloud

OBJECT_BYTES = 64
ROOT = Path(__file__).resolve().parent.parent
CURVE_AT = (0.25, 0.5, 0.75, 1.0)  # fractions of the run's time at which RSS is reported


@dataclass
class Measured:
    seconds: float
    peak_mib: float  # VmHWM
    curve: list[tuple[float, float]]  # (seconds since start, VmRSS MiB), every 0.5 s
    out: bytes
    code: int
    load: tuple[float, float]  # 1-minute load average at start and end

    def rss_at(self, fraction: float) -> float:
        """VmRSS of the last sample taken at or before `fraction` of the run's time."""
        taken = [rss for t, rss in self.curve if t <= fraction * self.seconds]
        return taken[-1] if taken else 0.0

    def curve_text(self) -> str:
        return " / ".join(f"{self.rss_at(f):.0f}" for f in CURVE_AT)


def _status(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB, or None once the process has gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):  # IndexError: exited (no Vm lines)
        status = Path(f"/proc/{pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]), int(status.split("VmHWM:")[1].split()[0])
    return None


def sampled(cmd: list[str], env: dict[str, str]) -> Measured:
    """Run `cmd`, polling its VmHWM every 20 ms and keeping its VmRSS every 0.5 s.

    The peak is the child's own VmHWM from /proc: `ru_maxrss` of a forked child starts at the
    parent's size (fork copies it), which would hide the child's.
    """
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
        peak_kib, curve, next_sample = 0, [], 0.0
        while proc.poll() is None:
            now = _status(proc.pid)
            elapsed = time.perf_counter() - started
            if now is not None:
                peak_kib = max(peak_kib, now[1])
                if elapsed >= next_sample:
                    curve.append((elapsed, now[0] / 1024))
                    next_sample += 0.5
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            sys.stderr.write(err.read().decode(errors="replace")[-2000:])
        return Measured(seconds, peak_kib / 1024, curve, out.read(), proc.returncode, (load, os.getloadavg()[0]))


def seed(container: Any, prefix: str, count: int) -> None:
    present = sum(1 for _ in container.list_blobs(name_starts_with=prefix))
    if present >= count:
        return
    print(f"seeding {count} x {OBJECT_BYTES} B under {prefix}", file=sys.stderr, flush=True)
    keys = [f"{prefix}{i // 1000:03d}/object-{i:07d}" for i in range(count)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: container.upload_blob(k, k.encode().ljust(OBJECT_BYTES, b"."), overwrite=True),
                      keys))


def child_run(source: str, dest: str, expect_copied: int) -> Measured:
    env = {**os.environ, "BACKUP_SOURCE_PREFIX": source, "BACKUP_S3_PREFIX": dest,
           "BACKUP_TIME_BUDGET_SECONDS": "3600"}
    run = sampled([sys.executable, "-m", "crosscloud", "backup", "--json"], env)
    report = json.loads(run.out)
    if run.code or report["copied"] != expect_copied or report["failed_count"] or not report["complete"]:
        raise SystemExit(f"backup did not do what was measured: exit {run.code}, copied {report['copied']}")
    return run


def index_write(dest: str, entries: int) -> tuple[float, Measured]:
    """The end-of-run index write of a first copy of `entries` objects, in a child of its own:
    (its RSS just before the write, the child measured)."""
    env = {**os.environ, "BACKUP_S3_PREFIX": dest}
    run = sampled([sys.executable, "-m", "bench.backup_memory_bench", "--index-child", str(entries)], env)
    if run.code:
        raise SystemExit(f"the index write failed: exit {run.code}")
    return float(run.out.split()[-1]), run


def index_child(entries: int) -> None:
    """Record `entries` copies as a first copy does (a tombstone, then the verified entry: two
    adds per object; keys, ETags and sizes like the seeded blobs'), then save the index to the
    local cloud's S3 under BACKUP_S3_PREFIX with the backup role; print VmRSS before saving."""
    from crosscloud.backup import index
    from crosscloud.backup.config import BackupConfig
    from crosscloud.settings import Settings
    from crosscloud.stores import factory

    source, dest = factory.azure_store(bulk=True), factory.s3_store(backup=True)
    writer = index.IndexWriter(source.sort_key, source.listing_order)
    for i in range(entries):
        key = f"bench-mem/{entries}/{i // 1000:03d}/object-{i:07d}"
        writer.add(key, None, None)
        writer.add(key, secrets.token_hex(16), f"0x8DE{secrets.token_hex(7).upper()[:13]}")
    before = _status(os.getpid())
    config = BackupConfig.from_settings(Settings())
    writer.save(dest, config.prefix + index.INDEX_NAME, {"run_id": "bench"}, config.part_size)
    print(f"{before[0] / 1024 if before else 0:.1f}")


def counted_noop(source: str, dest: str) -> Counter[str]:
    """The no-op rerun in this process, counting what the stores were asked per kind and what
    for (the lease, the index; anything else would be a per-object request), and the peak of
    the Python heap it allocated (tracemalloc; the SDKs' own caches included)."""
    from crosscloud.backup import run_configured
    from crosscloud.backup.config import BackupConfig
    from crosscloud.backup.index import INDEX_NAME
    from crosscloud.backup.lease import LEASE_NAME
    from crosscloud.settings import Settings
    from crosscloud.stores import factory

    os.environ.update(BACKUP_SOURCE_PREFIX=source, BACKUP_S3_PREFIX=dest)
    calls: Counter[str] = Counter()

    def counting(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            key = str(args[0]) if args else ""
            what = " (lease)" if key.endswith(LEASE_NAME) else " (index)" if key.endswith(INDEX_NAME) else ""
            calls[name + what] += 1
            return real(*args, **kwargs)
        return call

    # The very stores run_configured builds (the factory caches them by these arguments).
    stores = (factory.azure_store(chunk_size=BackupConfig.from_settings(Settings()).part_size, bulk=True),
              factory.s3_store(backup=True))
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
    if not calls["azure.list_pages"] or not calls["s3.list_pages"]:
        raise SystemExit(f"the counted stores are not the ones the run used: {dict(calls)}")
    per_object = {k: v for k, v in calls.items() if k.endswith((".stat", ".open", ".put"))}
    if per_object:
        raise SystemExit(f"the no-op rerun sent per-object requests: {per_object}")
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[5000, 50000, 100000])
    parser.add_argument("--index-entries", type=int, default=1_000_000,
                        help="measure the end-of-run index write for this many objects (0: skip)")
    parser.add_argument("--index-child", type=int, help=argparse.SUPPRESS)  # internal: the measured child
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    if args.index_child is not None:
        index_child(args.index_child)
        return
    rows, curves, peaks, loads = [], [], {}, []
    with local_cloud() as env:
        container, _ = admin_clients(env)
        for count in args.counts:
            source = f"bench-mem/{count}/"
            seed(container, source, count)
            dest = f"{env['BACKUP_S3_PREFIX']}bench-mem/{uuid.uuid4().hex[:8]}/"
            first = child_run(source, dest, count)
            noop = child_run(source, dest, 0)
            calls = counted_noop(source, dest)
            peaks[count] = (first.peak_mib, noop.peak_mib)
            loads += [*first.load, *noop.load]
            traced = calls.pop("traced peak MiB")
            rows.append(f"| {count:,} | {first.seconds:.1f} s | {first.peak_mib:.0f} MiB | {noop.seconds:.1f} s | "
                        f"{noop.peak_mib:.0f} MiB | {traced} MiB | "
                        f"{', '.join(f'{k} {v}' for k, v in sorted(calls.items()))} |")
            curves.append(f"| {count:,} | {first.curve_text()} | {noop.curve_text()} |")
            print(rows[-1], curves[-1], file=sys.stderr, flush=True)
        index_line = ""
        if args.index_entries:
            before, write = index_write(f"{env['BACKUP_S3_PREFIX']}bench-mem/{uuid.uuid4().hex[:8]}/",
                                        args.index_entries)
            loads += list(write.load)
            index_line = (f"- The index write at the end of a first copy of {args.index_entries:,} objects "
                          f"({2 * args.index_entries:,} entries recorded, merged, gzipped and uploaded), "
                          f"measured in a process of its own: VmRSS {before:.0f} MiB before it, peak "
                          f"{write.peak_mib:.0f} MiB during it (+{write.peak_mib - before:.0f} MiB), "
                          f"{write.seconds:.0f} s in all.")
            print(index_line, file=sys.stderr, flush=True)
    # The slope is taken between the two largest counts: bounded buffers (the index's sort run
    # of 10,000 entries, its 1 MiB spool) are full there, as they are at a million. The index
    # upload's one part (up to 8 MiB) still grows there, so the slope overstates it a little.
    low, high = sorted(peaks)[-2:] if len(peaks) > 1 else (min(peaks), max(peaks))
    lines = ["## Backup memory against the object count (issue 13)", "",
             f"{machine()}; `python -m bench.backup_memory_bench --counts {' '.join(map(str, args.counts))}`; "
             f"objects of {OBJECT_BYTES} B; 1-minute load average {min(loads):.1f}-{max(loads):.1f} at the "
             "measured runs' starts and ends (2 CPUs shared with other work). Peak RSS is the backup "
             "process's VmHWM. The no-op rerun's store calls are counted in-process and labelled by "
             "the key they were for: the lease (taken, re-written every `BACKUP_LEASE_SECONDS`/3 = 100 s, "
             "released: a run longer than 100 s shows one more write) and the index (one read, one write); "
             "a `stat`/`open`/`put` of any other key would be a per-object request, and the bench stops "
             "if it sees one.", "",
             "| objects | first copy | peak RSS | no-op rerun | peak RSS | no-op Python heap peak | store calls in the no-op rerun |",
             "|---|---|---|---|---|---|---|", *rows, "",
             "VmRSS (MiB) at 25 / 50 / 75 / 100 % of each run's time:", "",
             "| objects | first copy | no-op rerun |", "|---|---|---|", *curves, ""]
    if high > low:
        for label, i in (("first copy", 0), ("no-op rerun", 1)):
            slope = (peaks[high][i] - peaks[low][i]) / (high - low)
            lines.append(f"- {label}: {slope * 1024 * 1024:.0f} bytes per object; extrapolated to 1,000,000 "
                         f"objects: {peaks[low][i] + slope * (1_000_000 - low):.0f} MiB (target: under 256 MiB).")
    if index_line:
        lines.append(index_line)
    write_section("backup-memory", "\n".join(lines))


if __name__ == "__main__":
    main()
