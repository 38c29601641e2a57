"""Restore: the copy engine run from the S3 backup back into the Azure container.

The same loop as the backup (`run.CopyRun`), with the restore planner, metadata that drops
the backup's bookkeeping, and the MD5 the backup recorded checked on the way and set on
the blob. With `as_of`, the backup is read through a point-in-time view of its versions
(`stores.s3_versions`); without, its current versions. No lease: restore writes only
with create-only or If-Match conditions, so overlapping restores cannot clobber a blob.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace

from crosscloud.backup.config import RESERVED, BackupConfig
from crosscloud.backup.report import BackupReport, Progress, utc_iso
from crosscloud.backup.restore_plan import RestorePlanner, recorded_md5, restore_metadata
from crosscloud.backup.run import CopyRun
from crosscloud.errors import BadRequest
from crosscloud.settings import Settings
from crosscloud.stores.base import ObjectStore

CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class RestoreRequest:
    prefix: str = ""  # only backup keys under this (source blob names)
    as_of: dt.datetime | None = None  # the versions current then; None: the current ones
    to_prefix: str = ""  # restore under this prefix instead of in place
    overwrite: bool = False  # replace blobs that differ (If-Match the blob seen)


def _blob_prefix(value: str, name: str) -> str:
    """A blob name prefix: no leading slash, no empty or dot segment, no control character
    or backslash, at most 1,024 characters (Azure's blob name limit)."""
    segments = value.split("/")[:-1] if value.endswith("/") else value.split("/")
    if value and (value.startswith("/") or CONTROL.search(value) or len(value) > 1024
                  or any(s in ("", ".", "..") for s in segments)):
        raise BadRequest(f"{name} must be a blob name prefix like restored/2026-01-01/ (no leading slash, no "
                         f"empty, '.' or '..' segment, no backslash or control character), got {value[:80]!r}",
                         code=f"invalid_{name.split(' ')[0]}")
    return value


def parse_as_of(value: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """ISO-8601; UTC unless it carries an offset. Not in the future (nothing is known there)."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise BadRequest(f"as_of (--as-of) must be an ISO-8601 time like 2026-01-31T23:00:00Z, got {value[:40]!r}",
                         code="invalid_as_of") from None
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    if moment > (now or dt.datetime.now(dt.UTC)):
        raise BadRequest(f"as_of (--as-of) {utc_iso(moment)} is in the future", code="invalid_as_of")
    return moment


def parse_request(*, prefix: str | None = None, as_of: str | None = None, to_prefix: str | None = None,
                  overwrite: bool = False) -> RestoreRequest:
    """Validate what a caller asked for; BadRequest naming the parameter, before anything runs."""
    prefix = _blob_prefix(prefix or "", "prefix (--prefix)")
    to_prefix = _blob_prefix(to_prefix or "", "to_prefix (--to-prefix)")
    for name, value in (("prefix (--prefix)", prefix), ("to_prefix (--to-prefix)", to_prefix)):
        if value.startswith(RESERVED):
            raise BadRequest(f"{name} must not start with the reserved {RESERVED}", code="invalid_prefix")
    return RestoreRequest(prefix, parse_as_of(as_of), to_prefix, overwrite)


class Restore(CopyRun):
    """One restore: backup versions under `backup_prefix + request.prefix` to blobs."""

    kind = "restore"

    def __init__(self, source: ObjectStore, dest: ObjectStore, config: BackupConfig, request: RestoreRequest, *,
                 backup: ObjectStore | None = None, dry_run: bool = False, run_id: str | None = None,
                 progress: Progress | None = None):
        as_of = f" as of {utc_iso(request.as_of)}" if request.as_of else ""
        planner = RestorePlanner(source, dest, backup=backup or source, backup_prefix=config.prefix,
                                 prefix=request.prefix, to_prefix=request.to_prefix, overwrite=request.overwrite,
                                 empty_hint=as_of)
        where = f" prefix {request.to_prefix}" if request.to_prefix else " (in place)"
        super().__init__(source, dest, config, planner, metadata=restore_metadata,
                         content_md5=lambda src: src.content_md5 or recorded_md5(src.metadata),
                         destination=dest.describe() + where, dry_run=dry_run, run_id=run_id, progress=progress)
        self.report.source = f"{source.describe()} prefix {config.prefix}{request.prefix}"


def run_configured(request: RestoreRequest, settings: Settings | None = None, *, dry_run: bool = False,
                   progress: Progress | None = None, max_seconds: float | None = None) -> BackupReport:
    """Restore from the configured backup (bucket, prefix, restore role) into the container."""
    from crosscloud.stores import factory  # SDK clients are built on first use, never at import
    from crosscloud.stores.s3_versions import VersionedView

    settings = settings or Settings()
    config = BackupConfig.from_settings(settings)
    if max_seconds is not None:
        config = replace(config, time_budget_s=min(config.time_budget_s, max_seconds))
    backup = factory.s3_store(settings, restore=True)
    source = VersionedView(backup, request.as_of) if request.as_of else backup
    dest = factory.azure_store(settings, block_size=config.part_size, bulk=True)
    return Restore(source, dest, config, request, backup=backup, dry_run=dry_run, progress=progress).run()
