"""`python -m crosscloud ...`: the same code paths as the functions, from a terminal.

Each subcommand is one `cmd_*` function registered in `build_parser`; errors are the
library's `CrossCloudError`s, printed as one line (or JSON with --json) with exit code 1
(2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crosscloud.errors import CrossCloudError
from crosscloud.logs import guard_sdk_loggers
from crosscloud.settings import Settings

# The SDKs (and the stores built on them) are imported by the commands that use them, so
# `--help` and a backup run do not pay for what they never touch.


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def print_table(rows: list[dict[str, object]], out=sys.stdout) -> None:  # noqa: ANN001
    """The combined listing as an aligned table: source, size, last modified, key."""
    header = ("SOURCE", "SIZE", "LAST MODIFIED (UTC)", "KEY")
    lines = [header] + [(str(r["source"]), _human(int(r["size"])),  # type: ignore[call-overload]
                         str(r["last_modified"]).replace("T", " ").replace("Z", ""), str(r["key"]))
                        for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    for line in lines:
        out.write(f"{line[0]:<{widths[0]}}  {line[1]:>{widths[1]}}  {line[2]:<{widths[2]}}  {line[3]}\n")


def print_json(document: object) -> None:
    """What --json prints: one indented JSON document on stdout."""
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def cmd_list(args: argparse.Namespace) -> int:
    from crosscloud import listing
    from crosscloud.stores import factory

    sources = listing.parse_source(args.source)
    prefix = listing.parse_prefix(args.prefix)
    settings = Settings()
    stores = {name: factory.store_for(name, settings) for name in sources}
    rows: list[dict[str, object]] = []
    cursor = None
    while True:  # the CLI shows everything: it pages until the cursor runs out
        page = listing.list_objects(stores, source=args.source, prefix=prefix,
                                    limit=listing.MAX_LIMIT, cursor=cursor)
        rows.extend(e.as_json() for e in page.items)
        cursor = page.next_cursor
        if not cursor:
            break
    if args.json:
        print_json({"items": rows, "next_cursor": None})
    elif not rows:
        print("(no objects)")
    else:
        print_table(rows)
        total = sum(int(r["size"]) for r in rows)  # type: ignore[call-overload]
        print(f"{len(rows)} objects, {_human(total)}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from crosscloud import objects
    from crosscloud.stores import factory

    if args.source not in factory.SOURCES:
        raise CrossCloudError(f"SOURCE must be azure or s3, got {args.source!r}", code="invalid_source", status=400)
    store = factory.store_for(args.source, Settings())
    with objects.open_object(store, args.key) as reader:  # streamed: any size, never buffered whole
        if args.output in (None, "-"):
            for chunk in reader.iter_chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            target = Path(args.output)
            tmp = target.with_name(f".{target.name}.part")
            with open(tmp, "wb") as fh:
                for chunk in reader.iter_chunks():
                    fh.write(chunk)
            if tmp.stat().st_size != reader.info.size:
                tmp.unlink()
                raise CrossCloudError(f"short read: got fewer than {reader.info.size} bytes", code="short_read")
            shutil.move(tmp, target)
            print(f"wrote {target} ({_human(reader.info.size)})", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from crosscloud.doctor import runner

    _quiet_identity_warnings()  # the report explains token failures; no duplicate SDK warnings
    policy = runner.load_trust_policy(args.trust_policy) if args.trust_policy else None
    report = runner.run(Settings(), trust_policy=policy, trust_policy_source=args.trust_policy)
    if args.json:
        print_json(report.as_json())
    else:
        sys.stdout.write(runner.render_text(report))
    return 0 if report.ok else 1


def cmd_credential_process(args: argparse.Namespace) -> int:
    from crosscloud.auth import credential_process

    _quiet_identity_warnings()  # stderr must be one clear line for the AWS CLI to show
    document = credential_process.run(role_arn=args.role_arn, audience=args.audience, client_id=args.client_id,
                                      region=args.region, system_assigned=args.system_assigned)
    json.dump(document, sys.stdout)  # the credential_process protocol: the one place credentials are printed
    sys.stdout.write("\n")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    import logging

    from crosscloud import backup

    logging.getLogger(backup.REPORT_LOGGER).setLevel(logging.CRITICAL)  # printed below instead
    from crosscloud.backup import fanout

    if not args.dry_run and (args.fan_out or fanout.enabled()):  # dry runs always run in-process
        return _backup_fan_out(args)
    return _run_and_report(lambda bar: backup.run_configured(dry_run=args.dry_run, progress=bar), args, "backup")


def cmd_restore(args: argparse.Namespace) -> int:
    import logging

    from crosscloud import backup
    from crosscloud.backup import restore

    request = restore.parse_request(prefix=args.prefix, as_of=args.as_of, to_prefix=args.to_prefix,
                                    overwrite=args.overwrite)
    logging.getLogger(backup.REPORT_LOGGER).setLevel(logging.CRITICAL)  # printed below instead
    return _run_and_report(lambda bar: restore.run_configured(request, dry_run=args.dry_run, progress=bar), args,
                           "restore")


def _run_and_report(run: Callable[[Any], Any], args: argparse.Namespace, kind: str) -> int:
    """Run a copy (a progress bar on an interactive stderr), print its report; exit 0 if it is ok."""
    from crosscloud.backup.report import ProgressBar, summary

    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        report = run(bar)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print_json(report.as_json())
    else:
        sys.stdout.write(summary(report, kind))
    return 0 if report.ok else 1


def _backup_fan_out(args: argparse.Namespace) -> int:
    """Plan a fan-out run, then wait for its shards (copied by the queue-triggered function)."""
    from crosscloud.backup import fanout, shards
    from crosscloud.backup.report import BackupReport, Failure, summary  # noqa: F811

    plan = fanout.plan_configured()
    _, dest, config = shards.configured()
    so_far = "so far; planning continues in a queue message" if plan.get("planning") == "continues" else "in all"
    print(f"backup {plan['run_id']}: {plan['shards']} shard(s) queued ({plan['objects']} objects {so_far}); "
          "waiting for the queue-triggered function to copy them", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{done}/{total} shards reported")
            sys.stderr.flush()

    data = fanout.wait_for_report(dest, config, plan, args.wait, progress)
    if data is None:
        print(f"backup {plan['run_id']}: not complete after {args.wait} s; its report will be at "
              f"{config.prefix}.crosscloud/runs/{plan['run_id']}/report.json", file=sys.stderr)
        return 1
    if args.json:
        print_json(data)
    else:
        report = BackupReport(**{**data, "failed": [Failure(**f) for f in data["failed"]]})
        sys.stdout.write(summary(report))
    return 0 if data["complete"] and data["failed_count"] == 0 else 1


def _quiet_identity_warnings() -> None:
    import logging

    logging.getLogger("azure.identity").setLevel(logging.ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crosscloud",
        description="One Azure managed identity for Azure Blob Storage and AWS S3. Settings come "
        "from the environment (see README: AZURE_STORAGE_CONTAINER_URL, AWS_ROLE_ARN, ...).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="combined listing of the container and the bucket")
    p.add_argument("--source", default="all", choices=["all", "azure", "s3"], help="which cloud (default all)")
    p.add_argument("--prefix", default="", help="only keys starting with this")
    p.add_argument("--json", action="store_true", help="JSON like GET /api/objects, all pages in one")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("get", help="stream one object to a file or stdout (any size)")
    p.add_argument("source", metavar="SOURCE", help="azure or s3")
    p.add_argument("key", metavar="KEY", help="object key, exactly as listed (Azure refuses keys with a "
                   "'.' or '..' segment, a segment ending with a dot, or a backslash: they name another blob)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("doctor", help="check identity, Azure access and the Entra-to-AWS trust; name each fix")
    p.add_argument("--json", action="store_true", help="stable JSON report (schema crosscloud.doctor/1)")
    p.add_argument("--trust-policy", metavar="FILE", help="the role's trust policy (policy JSON or `aws iam "
                   "get-role` output), evaluated offline against the token's claims")
    p.set_defaults(handler=cmd_doctor)

    p = sub.add_parser("credential-process", help="AWS credential_process JSON for the role, cached per user")
    p.add_argument("--role-arn", help="role to assume (default AWS_ROLE_ARN)")
    p.add_argument("--audience", help="App ID URI of the token (default AWS_WEB_IDENTITY_AUDIENCE)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--client-id", help="user-assigned identity's client ID (default AZURE_CLIENT_ID)")
    who.add_argument("--system-assigned", action="store_true", help="use the system-assigned identity")
    p.add_argument("--region", help="region for STS (default AWS_REGION)")
    p.set_defaults(handler=cmd_credential_process)

    p = sub.add_parser("backup", help="copy new and changed blobs to the backup S3 prefix (exit 1 if any "
                       "failed or the run is incomplete)")
    p.add_argument("--dry-run", action="store_true", help="report what would be copied; write nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON (as POST /api/backup returns it)")
    p.add_argument("--fan-out", action="store_true", help="plan the run into shards on the queue "
                   "(BACKUP_QUEUE_NAME), wait for the queue-triggered function to copy them, print the "
                   "combined report")
    p.add_argument("--wait", type=float, default=3600, metavar="SECONDS",
                   help="with --fan-out: how long to wait for the shards (default 3600)")
    p.set_defaults(handler=cmd_backup)

    p = sub.add_parser("restore", help="copy backup versions back into the container; never deletes, never "
                       "replaces a blob that differs unless --overwrite (exit 1 if any failed or incomplete)")
    p.add_argument("--prefix", default="", help="only blobs whose names start with this")
    p.add_argument("--as-of", metavar="TIME", help="restore each blob as it was backed up at this moment "
                   "(ISO-8601, UTC unless an offset is given, e.g. 2026-01-31T23:00:00Z); default: the latest")
    p.add_argument("--to-prefix", default="", metavar="Q", help="restore under this prefix instead of in place")
    p.add_argument("--overwrite", action="store_true", help="replace blobs that differ from the backup version")
    p.add_argument("--dry-run", action="store_true", help="report what would be restored; write nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON (as POST /api/restore returns it)")
    p.set_defaults(handler=cmd_restore)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    guard_sdk_loggers()
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CrossCloudError as exc:
        if getattr(args, "json", False):
            json.dump({"error": {"code": exc.code, "message": exc.message}}, sys.stderr)
            sys.stderr.write("\n")
        else:
            print(f"crosscloud: {exc.message}", file=sys.stderr)
        return 2 if exc.status == 400 else 1
    except KeyboardInterrupt:
        return 130
