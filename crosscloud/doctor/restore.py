"""The doctor's restore check: could a restore run with the grants the app has right now?

Restore needs rights nothing else in the app uses, opt-in in infra/ (`enable_restore`):
`s3:ListBucketVersions` and `s3:GetObjectVersion` on the backup prefix for the restore
role (AWS_RESTORE_ROLE_ARN, default AWS_BACKUP_ROLE_ARN), and a data write role on the
container. Every probe changes nothing: a versions listing, a one-byte ranged read of one
version, and a blob write conditioned on an ETag that cannot exist (the service checks
the caller's role before the condition, so 412/404 means "allowed", 403 "not allowed").
Without AWS_RESTORE_ROLE_ARN a refusal is a warning (restore not set up), with it a failure.
"""

from __future__ import annotations

import io
import uuid

from crosscloud.doctor.model import Context, Outcome
from crosscloud.errors import CrossCloudError, NotFound, PreconditionFailed, SettingError
from crosscloud.stores import factory
from crosscloud.stores.base import PutOptions
from crosscloud.stores.s3 import s3_errors

OPT_IN = ("restore is opt-in: apply infra/ with enable_restore = true (a crosscloud-restore role from "
          "infra/policies/s3-restore.json.tpl and Storage Blob Data Contributor on the container) and set "
          "AWS_RESTORE_ROLE_ARN")


def _s3_probe(ctx: Context, role: str, bucket: str, prefix: str) -> str:
    """List versions under the prefix and read one byte of one; returns what was proven."""
    client = factory.s3_store(ctx.settings, restore=True).client
    with s3_errors("list backup versions (s3:ListBucketVersions)", bucket, role):
        page = client.list_object_versions(Bucket=bucket, Prefix=prefix, MaxKeys=5)
    versions = [v for v in page.get("Versions", []) if v.get("VersionId") not in (None, "null")]
    if not versions:
        return f"listed versions under s3://{bucket}/{prefix} (none yet, so s3:GetObjectVersion is unproven)"
    key, version = versions[0]["Key"], versions[0]["VersionId"]
    with s3_errors("read a backup version (s3:GetObjectVersion)", bucket, role, key):
        client.get_object(Bucket=bucket, Key=key, VersionId=version, Range="bytes=0-0")["Body"].close()
    return f"listed and read backup versions under s3://{bucket}/{prefix}"


def _azure_probe(ctx: Context) -> str:
    store = factory.azure_store(ctx.settings)
    probe = f"crosscloud-doctor-probe-{uuid.uuid4().hex[:12]}"  # never created: the condition cannot hold
    try:
        store.put(probe, io.BytesIO(b""), 0, PutOptions(if_match="0x0DOCTOR0PROBE"))
    except (PreconditionFailed, NotFound):
        return "may write blobs (a write conditioned on an impossible ETag was refused by its condition)"
    raise CrossCloudError(f"the probe write of {probe!r} was accepted without its condition; delete that blob",
                          code="probe_written")


def check_restore(ctx: Context) -> Outcome:
    ctx.needs("aws_token", settings=("BACKUP_S3_BUCKET", "BACKUP_S3_PREFIX", "AZURE_STORAGE_CONTAINER_URL"))
    try:
        role = ctx.settings.aws_restore_role_arn
    except SettingError as exc:
        return Outcome("fail", exc.message, "set AWS_RESTORE_ROLE_ARN to the restore role's ARN, or unset it")
    configured = bool(ctx.env.get("AWS_RESTORE_ROLE_ARN", "").strip())
    bucket, prefix = ctx.values["BACKUP_S3_BUCKET"], ctx.values["BACKUP_S3_PREFIX"]
    proven, problems, fixes = [], [], []
    try:
        proven.append(f"{role}: {_s3_probe(ctx, role, bucket, prefix)}")
    except CrossCloudError as exc:
        problems.append(exc.message)
        fixes.append(f"allow s3:ListBucketVersions on arn:aws:s3:::{bucket} and s3:GetObjectVersion on "
                     f"arn:aws:s3:::{bucket}/{prefix}* to {role}")
    try:
        proven.append(f"{ctx.who}: {_azure_probe(ctx)}")
    except CrossCloudError as exc:
        problems.append(exc.message)
        fixes.append(f"assign 'Storage Blob Data Contributor' on the container to {ctx.who}")
    data = {"restore_role": role, "configured": configured}
    if problems:
        detail = "restore is not possible with the current grants: " + "; ".join(problems)
        return Outcome("fail" if configured else "warn", detail, "; ".join(fixes + [OPT_IN]), data)
    return Outcome("pass", "; ".join(proven), data=data)
