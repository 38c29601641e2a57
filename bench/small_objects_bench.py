"""Small objects: ours against `rclone copy`, with client CPU, requests and emulator CPU per object.

`python -m bench.small_objects_bench [--rounds 3] [--large-rounds 1] [--baseline DIR]` seeds
1,000 x 16 KiB (and 4 x 200 MiB) blobs once, then per round, the tools in a rotating order:
the first copy of the 1,000 into a fresh prefix, then a no-op rerun over them; the large
objects in `--large-rounds` rounds. Tools: `ours` (`python -m crosscloud backup`, the lean
small-object path on: the default), `ours-sdk` (the same code with BACKUP_FAST_PATH_MB=0),
`before` (the code in DIR, e.g. `git archive <commit> crosscloud | tar -x -C DIR`; optional)
and `rclone copy` (installed with `apt-get install -y rclone` on Debian/Ubuntu; credentials as
in bench/backup_bench.py). Each run is a fresh process: wall time, the child's user+sys CPU
from `os.wait4`'s rusage, its peak RSS (VmHWM), and the emulators' CPU (utime+stime of the
devstack processes in `.devstack/pids.json`, before/after). Requests per object by kind come
from one extra, untimed run per tool through a pass-through loopback proxy that counts them.
The load average is recorded next to each case: other work on the machine shares the CPUs,
so wall-clock ratios are noisy; CPU per object is the robust figure.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.backup_bench import LARGE, ROOT, Rclone, _clients, _count, _delete_prefix, _random_stream, _rclone_version
from bench.report import bench_main, machine
from bench.stack import local_cloud

SMALL = ("bench-small/", 1000, 16 * 1024)
RAW = ROOT / "bench" / ".work" / "small_objects_bench.json"
TICK = os.sysconf("SC_CLK_TCK")


def seed(container: Any) -> None:
    present = {b.name: b.size for b in container.list_blobs(name_starts_with=SMALL[0])}
    present |= {b.name: b.size for b in container.list_blobs(name_starts_with=LARGE[0])}
    from concurrent.futures import ThreadPoolExecutor

    for prefix, count, size in (SMALL, LARGE):
        missing = [k for k in (f"{prefix}{i // 100:02d}/object-{i:05d}.bin" for i in range(count))
                   if present.get(k) != size]
        print(f"seeding {len(missing)} x {size // 1024} KiB under {prefix}", file=sys.stderr, flush=True)
        if size <= 64 * 1024 * 1024:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k, n=size: container.upload_blob(k, os.urandom(n), overwrite=True), missing))
        else:
            for key in missing:
                container.upload_blob(key, _random_stream(size), length=size, overwrite=True, max_concurrency=4)


def emulator_cpu() -> float:
    """CPU seconds used so far by the devstack processes (moto + identity daemon, Azurite)."""
    from devstack import config

    total = 0
    for pid in json.loads((config.state_dir() / "pids.json").read_text()).values():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Wall, user+sys CPU (rusage), peak RSS (VmHWM, polled), emulator CPU of one child; its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        emulators, load, started = emulator_cpu(), os.getloadavg()[0], time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        peak_kib, status, usage = 0, 0, None
        while usage is None:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                usage = rusage
                break
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(f"/proc/{proc.pid}/status").read_text()
                peak_kib = max(peak_kib, int(text.split("VmHWM:")[1].split()[0]))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            sys.stderr.write(err.read().decode(errors="replace")[-2000:])
            raise SystemExit(f"{cmd[:3]} failed (exit {proc.returncode})")
        return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": peak_kib / 1024,
                "emulators_cpu": emulator_cpu() - emulators, "load": load, "stdout": out.read().decode()}


class Tools:
    """How each tool is started for a (source prefix, destination prefix)."""

    def __init__(self, env: dict[str, str], baseline: Path | None):
        self.rclone = Rclone(env)
        self.baseline = baseline
        self.names = ["ours", "ours-sdk", *(["before"] if baseline else []), "rclone"]

    def command(self, name: str, source: str, dest: str, *, s3_url: str | None = None,
                azure_url: str | None = None) -> tuple[list[str], dict[str, str], Path]:
        if name == "rclone":
            env = dict(self.rclone.env)
            base = list(self.rclone.base)
            if azure_url:
                sas = env["RCLONE_AZUREBLOB_SAS_URL"]
                env["RCLONE_AZUREBLOB_SAS_URL"] = azure_url + "/" + sas.split("/", 3)[3]
            if s3_url:
                base[base.index("--s3-endpoint") + 1] = s3_url
            extra = ["--s3-no-head"] if source == LARGE[0] else []  # see bench/backup_bench.py
            return [*base, *extra, f":azureblob:data/{source}", f":s3:{self.rclone.bucket}/{dest}{source}"], env, ROOT
        env = {**os.environ, "BACKUP_S3_PREFIX": dest, "BACKUP_SOURCE_PREFIX": source}
        env.pop("BACKUP_FAST_PATH_MB", None)
        if name == "ours-sdk":
            env["BACKUP_FAST_PATH_MB"] = "0"
        if azure_url:
            env["AZURE_STORAGE_CONTAINER_URL"] = azure_url + "/" + os.environ["AZURE_STORAGE_CONTAINER_URL"].split("/", 3)[3]
        if s3_url:
            env["AWS_ENDPOINT_URL_S3"] = s3_url
        cwd = self.baseline if name == "before" and self.baseline else ROOT
        return [sys.executable, "-m", "crosscloud", "backup", "--json"], env, cwd


def kind(side: str, method: str, path: str) -> str:
    what = "list" if ("comp=list" in path or "list-type=2" in path) else \
        "bookkeeping" if ".crosscloud" in path else "object"
    return f"{side} {method} {what}"


def count_requests(tools: Tools, name: str, dest: str, env: dict[str, str]) -> dict[str, float]:
    """Requests per object by kind for one first copy of the small set, through counting proxies."""
    from tests.integration.faultproxy import FaultProxy

    tls = Path(env["REQUESTS_CA_BUNDLE"]).parent
    azure = FaultProxy(env["AZURE_STORAGE_CONTAINER_URL"], lambda *_: None,
                       cert=(str(tls / "server.pem"), str(tls / "server-key.pem")), ca_file=env["REQUESTS_CA_BUNDLE"])
    s3 = FaultProxy(env["AWS_ENDPOINT_URL_S3"], lambda *_: None)
    with azure, s3:
        cmd, child_env, cwd = tools.command(name, SMALL[0], dest, s3_url=s3.url, azure_url=azure.url)
        timed(cmd, child_env, cwd)
    counts = collections.Counter(kind(side, m, p) for side, proxy in (("Azure", azure), ("S3", s3))
                                 for m, p, *_ in proxy.seen)
    return {k: round(v / SMALL[1], 3) for k, v in sorted(counts.items())}


def measure(rounds: int, large_rounds: int, baseline: Path | None) -> dict[str, Any]:
    with local_cloud() as env:
        container, s3 = _clients(env)
        seed(container)
        tools = Tools(env, baseline)
        bucket, base = env["BACKUP_S3_BUCKET"], f"{env['BACKUP_S3_PREFIX']}small-{uuid.uuid4().hex[:6]}"
        runs: dict[str, dict[str, list[dict[str, Any]]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        plan = [("small", SMALL, r) for r in range(rounds)] + [("large", LARGE, r) for r in range(large_rounds)]
        for case, (source, count, _), r in plan:
            order = tools.names[r % len(tools.names):] + tools.names[:r % len(tools.names)]
            print(f"{case} round {r + 1}: {', '.join(order)}", file=sys.stderr, flush=True)
            for name in order:
                dest = f"{base}-{case}{r}/{name}/"
                cmd, child_env, cwd = tools.command(name, source, dest)
                runs[case][name].append(timed(cmd, child_env, cwd))
                if (n := _count(s3, bucket, dest + source)) != count:
                    raise SystemExit(f"{name}: {n} objects under {dest}{source}, expected {count}")
                if case == "small":  # the no-op rerun over the same, unchanged objects
                    runs["noop"][name].append(timed(cmd, child_env, cwd))
                _delete_prefix(s3, bucket, dest)
        print("requests per object", file=sys.stderr, flush=True)
        requests = {}
        for name in tools.names:
            requests[name] = count_requests(tools, name, f"{base}-count/{name}/", env)
            _delete_prefix(s3, bucket, f"{base}-count/{name}/")
        for by_tool in runs.values():
            for results in by_tool.values():
                for result in results:
                    result.pop("stdout")
        return {"runs": {c: dict(t) for c, t in runs.items()}, "requests": requests, "rounds": rounds,
                "large_rounds": large_rounds, "machine": machine(), "rclone": _rclone_version(),
                "uptime": subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()}


def render(data: dict[str, Any]) -> str:
    from bench.small_objects_report import render as render_tables

    return render_tables(data, SMALL, LARGE)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--large-rounds", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with (runs as `before`)")


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, name="small_objects_bench", section="small-objects", raw=RAW, rounds=3,
                      measure=lambda args: measure(args.rounds, args.large_rounds, args.baseline),
                      render=render, add_arguments=_arguments)


if __name__ == "__main__":
    sys.exit(main())
