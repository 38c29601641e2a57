"""Provision the local cloud: container, versioned bucket, OIDC provider, roles and their policies.

The IAM documents are rendered from `infra/policies/*.json.tpl`, the same templates
Terraform renders for production, so tests exercise the policies that get deployed.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from string import Template
from typing import Any

from devstack import config

POLICY_DIR = config.REPO_ROOT / "infra" / "policies"


def render_policy(name: str, **values: str) -> dict[str, Any]:
    """Render `infra/policies/<name>.json.tpl` (`${var}` placeholders, as Terraform's templatefile)."""
    text = (POLICY_DIR / f"{name}.json.tpl").read_text()
    return json.loads(Template(text).substitute(values))


def provider_arn() -> str:
    return f"arn:aws:iam::{config.ACCOUNT_ID}:oidc-provider/{config.ISSUER.removeprefix('https://')}"


def trust_policy(subjects: tuple[str, ...] = config.TRUSTED_PRINCIPALS) -> dict[str, Any]:
    return render_policy(
        "trust-web-identity",
        provider_arn=provider_arn(),
        provider_key=config.ISSUER.removeprefix("https://"),
        audience=config.AUDIENCE,
        subjects_json=json.dumps(list(subjects)),
    )


def provision_aws(endpoint: str, state: Path) -> dict[str, str]:
    """Create the IAM admin, OIDC provider, roles and bucket; returns the admin's keys."""
    import boto3

    boot = {"endpoint_url": endpoint, "region_name": config.REGION,
                "aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
    iam = boto3.client("iam", **boot)
    iam.create_user(UserName=config.ADMIN_USER)
    iam.put_user_policy(
        UserName=config.ADMIN_USER, PolicyName="admin",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    key = iam.create_access_key(UserName=config.ADMIN_USER)["AccessKey"]
    iam.create_open_id_connect_provider(
        Url=config.ISSUER, ClientIDList=[config.AUDIENCE], ThumbprintList=["0" * 40]
    )
    trust = json.dumps(trust_policy())
    for role, policy in (
        (config.READ_ROLE, render_policy("s3-read", bucket=config.S3_BUCKET)),
        (config.BACKUP_ROLE, render_policy("s3-backup", bucket=config.S3_BUCKET,
                                           prefix=config.BACKUP_PREFIX)),
        (config.RESTORE_ROLE, render_policy("s3-restore", bucket=config.S3_BUCKET,
                                            prefix=config.BACKUP_PREFIX)),
    ):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust, MaxSessionDuration=3600)
        iam.put_role_policy(RoleName=role, PolicyName="s3", PolicyDocument=json.dumps(policy))
    s3 = boto3.client("s3", **boot)
    s3.create_bucket(Bucket=config.S3_BUCKET)
    # The backup bucket is versioned, as infra/ deploys it (aws_s3_bucket_versioning): restore
    # --as-of reads the versions current at a moment.
    s3.put_bucket_versioning(Bucket=config.S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def connection_string(blob_endpoint: str, queue_endpoint: str | None = None) -> str:
    queues = f"QueueEndpoint={queue_endpoint};" if queue_endpoint else ""
    return (
        f"DefaultEndpointsProtocol=https;AccountName={config.AZURE_ACCOUNT};"
        f"AccountKey={config.AZURE_ACCOUNT_KEY};BlobEndpoint={blob_endpoint};{queues}"
    )


def provision_azure(conn_str: str, ca_bundle: Path) -> None:
    """Create the data container and the fan-out queues (shared-key access: the stack's admin
    path, not the app's; infra/ creates the same queues in Azure)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    service = BlobServiceClient.from_connection_string(conn_str, connection_verify=str(ca_bundle))
    with contextlib.suppress(ResourceExistsError):
        service.create_container(config.CONTAINER)
    if "QueueEndpoint=" in conn_str:
        queues = QueueServiceClient.from_connection_string(conn_str, connection_verify=str(ca_bundle))
        for name in (config.SHARD_QUEUE, f"{config.SHARD_QUEUE}-poison"):
            with contextlib.suppress(ResourceExistsError):
                queues.create_queue(name)
