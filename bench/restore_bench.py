"""Restore: ours against `rclone copy` in the other direction (S3 -> Azure), same run, same cloud.

`python -m bench.restore_bench [--rounds N]` — seeds the container (2,000 x 16 KiB and one
1 GiB blob under `bench-backup/`, shared with the backup bench) and backs them up once with
our backup (setup, not measured). Then per round, alternating who goes first, both restore
the 2,000 small objects into a fresh prefix of the container; finally each restores the
1 GiB blob once, its peak RSS measured (VmHWM of the child, as in the backup bench).
Both run as what a user types — `python -m crosscloud restore --to-prefix ...` and
`rclone copy :s3:... :azureblob:...` — each a fresh process timed from start to exit (ours
includes its token and STS exchange).

rclone's credentials: for S3, temporary credentials of the *same* restore role, obtained
through our federation, so the emulator checks the same policy for both; for Azure, a
read/write/list container SAS (rclone 1.60 cannot use App Service's managed-identity
endpoint). rclone runs with its defaults. If rclone is missing: `apt-get install -y rclone`
(Debian's package, 1.60). Results go to docs/benchmarks.md between the `restore` markers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.backup_bench import HUGE, MIB, SMALL, Run, _clients, _random_stream, _rclone_version, _timed
from bench.report import bench_main, machine
from bench.stack import local_cloud

ROOT = Path(__file__).resolve().parent.parent
BACKUP_PREFIX = "backup/bench-restore/"
RAW = ROOT / "bench" / ".work" / "restore_bench.json"  # the last measurement (gitignored)


def seed_and_back_up(container: Any) -> None:
    """The small set and the 1 GiB blob in the container, backed up under BACKUP_PREFIX (once)."""
    present = {b.name: b.size for b in container.list_blobs(name_starts_with="bench-backup/")}
    for prefix, count, size in (SMALL, HUGE):
        keys = [f"{prefix}{i // 100:02d}/object-{i:05d}.bin" for i in range(count)]
        missing = [k for k in keys if present.get(k) != size]
        if missing:
            print(f"seeding {len(missing)} x {size // 1024} KiB under {prefix}", file=sys.stderr, flush=True)
        if size <= 64 * MIB:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k, n=size: container.upload_blob(k, os.urandom(n), overwrite=True), missing))
        else:
            for key in missing:
                container.upload_blob(key, _random_stream(size), length=size, overwrite=True, max_concurrency=4)
        env = {**os.environ, "BACKUP_S3_PREFIX": BACKUP_PREFIX, "BACKUP_SOURCE_PREFIX": prefix}
        seconds, _, out, code = _timed([sys.executable, "-m", "crosscloud", "backup", "--json"], env)
        if code:
            raise SystemExit(f"setup backup of {prefix} failed (exit {code})")
        print(f"backup of {prefix}: {json.loads(out)['copied']} copied in {seconds:.1f} s", file=sys.stderr)


def ours(source_prefix: str, to_prefix: str, expect: int) -> Run:
    env = {**os.environ, "BACKUP_S3_PREFIX": BACKUP_PREFIX}
    cmd = [sys.executable, "-m", "crosscloud", "restore", "--prefix", source_prefix, "--to-prefix", to_prefix, "--json"]
    seconds, rss, out, code = _timed(cmd, env)
    report = json.loads(out)
    if code or report["copied"] != expect or report["failed_count"]:
        raise SystemExit(f"our restore did not do what was measured: exit {code}, copied {report['copied']} "
                         f"(expected {expect}), failed {report['failed_count']}")
    return Run(seconds, rss, f"{report['throughput_mib_s']} MiB/s in-run")


class Rclone:
    def __init__(self, env: dict[str, str]):
        self.env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone chokes on it
        self.env.update(RCLONE_CONFIG="/dev/null", RCLONE_AZUREBLOB_SAS_URL=self._sas_url(env),
                        **self._s3_credentials())
        self.base = ["rclone", "copy", "--ca-cert", str(Path(env["REQUESTS_CA_BUNDLE"]).with_name("ca.pem")),
                     "--s3-provider", "Other", "--s3-endpoint", env["AWS_ENDPOINT_URL_S3"],
                     "--s3-region", env["AWS_REGION"], "--stats", "0", "--retries", "1"]
        self.bucket = env["BACKUP_S3_BUCKET"]

    @staticmethod
    def _sas_url(env: dict[str, str]) -> str:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        from devstack import config

        now = dt.datetime.now(dt.UTC)
        sas = generate_container_sas(config.AZURE_ACCOUNT, config.CONTAINER, account_key=config.AZURE_ACCOUNT_KEY,
                                     permission=ContainerSasPermissions(read=True, write=True, create=True,
                                                                        list=True),
                                     start=now - dt.timedelta(minutes=5), expiry=now + dt.timedelta(hours=3))
        return f"{env['AZURE_STORAGE_CONTAINER_URL']}?{sas}"

    @staticmethod
    def _s3_credentials() -> dict[str, str]:
        """The restore role's temporary credentials, from our federation (never printed)."""
        from crosscloud.stores import factory

        frozen = factory.s3_store(restore=True).client._request_signer._credentials.get_frozen_credentials()
        return {"RCLONE_S3_ACCESS_KEY_ID": frozen.access_key, "RCLONE_S3_SECRET_ACCESS_KEY": frozen.secret_key,
                "RCLONE_S3_SESSION_TOKEN": frozen.token}

    def copy(self, source_prefix: str, to_prefix: str) -> Run:
        cmd = [*self.base, f":s3:{self.bucket}/{BACKUP_PREFIX}{source_prefix}",
               f":azureblob:data/{to_prefix}{source_prefix}"]
        seconds, rss, _, code = _timed(cmd, self.env)
        if code:
            raise SystemExit(f"rclone copy failed (exit {code})")
        return Run(seconds, rss)


def _check_and_delete(container: Any, prefix: str, expected: int) -> None:
    names = [b.name for b in container.list_blobs(name_starts_with=prefix)]
    if len(names) != expected:
        raise SystemExit(f"{prefix}: {len(names)} blobs, expected {expected}")
    for start in range(0, len(names), 256):
        container.delete_blobs(*names[start:start + 256])


def _load() -> str:
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load unknown"


def measure(rounds: int) -> dict[str, Any]:
    with local_cloud() as env:
        container, _ = _clients(env)
        seed_and_back_up(container)
        rclone = Rclone(env)
        base = f"bench-restore-{uuid.uuid4().hex[:6]}"
        small: dict[str, list[Run]] = {"ours": [], "rclone": []}
        loads = [_load()]
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            targets = {"ours": f"{base}-{r}/ours/", "rclone": f"{base}-{r}/rclone/"}
            runs = {"ours": lambda t: ours(SMALL[0], t, SMALL[1]), "rclone": lambda t: rclone.copy(SMALL[0], t)}
            for name in (("ours", "rclone") if r % 2 == 0 else ("rclone", "ours")):
                small[name].append(runs[name](targets[name]))
            for target in targets.values():
                _check_and_delete(container, target, SMALL[1])
            loads.append(_load())
        print("1 GiB blob, peak RSS", file=sys.stderr, flush=True)
        huge = {"ours": ours(HUGE[0], f"{base}-huge/ours/", 1), "rclone": rclone.copy(HUGE[0], f"{base}-huge/rclone/")}
        for name in huge:
            _check_and_delete(container, f"{base}-huge/{name}/", 1)
        loads.append(_load())
        return {"small": {k: [asdict(v) for v in runs] for k, runs in small.items()},
                "huge": {k: asdict(v) for k, v in huge.items()}, "rounds": rounds, "loads": loads,
                "machine": machine(), "rclone": _rclone_version()}


def render(data: dict[str, Any]) -> str:
    small, huge = data["small"], data["huge"]
    o = statistics.median(r["seconds"] for r in small["ours"])
    rc = statistics.median(r["seconds"] for r in small["rclone"])
    per_round = ", ".join(f"{b['seconds'] / a['seconds']:.2f}" for a, b in zip(small["ours"], small["rclone"],
                                                                               strict=True))
    ho, hr = huge["ours"], huge["rclone"]
    loads = ", ".join(text.split()[2] for text in data["loads"] if text.startswith("load average "))
    return f"""## Restore (S3 backup -> Azure container) vs `rclone copy` the other way

`python -m bench.restore_bench` on {data['machine']}, rclone {data['rclone']} (Debian's package:
`apt-get install -y rclone`), {data['rounds']} round(s) for the small set (who goes first
alternates), one run each for the 1 GiB blob; wall time of each whole process. Ours is
`python -m crosscloud restore --prefix ... --to-prefix <fresh>/` with its defaults (16 MiB
blocks, 8 objects x 4 blocks at once), rclone is `rclone copy :s3:<backup> :azureblob:<fresh>`
with its defaults. Ratio = rclone time / our time (above 1.0: ours is faster). Both read as
the same restore role (rclone with temporary credentials from our federation); rclone writes
with a container SAS. The machine was shared with other agents' work while this ran
(1-minute load averages before, after each round and after the 1 GiB runs: {loads}),
and the emulators (moto, Azurite) share its CPUs with both tools, so absolute times are
noisy and the ratios are from one loaded run, not a tuned comparison.

| case | ours | rclone copy | ratio (per round) |
|---|---|---|---|
| 2,000 x 16 KiB into a fresh prefix | {o:.2f} s | {rc:.2f} s | **{rc / o:.2f}** ({per_round}) |
| 1 x 1 GiB into a fresh prefix | {ho['seconds']:.1f} s | {hr['seconds']:.1f} s | **{hr['seconds'] / ho['seconds']:.2f}** |

| peak RSS (VmHWM) while restoring one 1 GiB blob | ours | rclone copy |
|---|---|---|
| whole process | **{ho['maxrss_mib']:.0f} MiB** | {hr['maxrss_mib']:.0f} MiB |

What ours does that rclone does not: it lists the target prefix once and writes every blob
create-only (If-None-Match: *), so a blob written meanwhile is never clobbered; it checks
each object's size and, where the backup recorded one, the source blob's MD5 while reading,
before Azure commits the blob (uncommitted blocks are never visible), and sets that
Content-MD5, Content-Type and the user metadata (without the backup's `crosscloud-*`).
"""


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, name="restore_bench", section="restore", raw=RAW, rounds=2,
                      measure=lambda args: measure(args.rounds), render=render)


if __name__ == "__main__":
    sys.exit(main())
