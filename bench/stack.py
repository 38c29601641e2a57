"""Use the running local cloud, or start one for the benchmark and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from devstack import envfile, stack


@contextlib.contextmanager
def local_cloud() -> Iterator[dict[str, str]]:
    started = not stack.running()
    if started:
        stack.up()
    saved = dict(os.environ)
    try:
        yield envfile.apply()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if started:
            stack.down()


def admin_clients(env: dict[str, str], **container_options: Any) -> tuple[Any, Any]:
    """Shared-key container client and IAM-admin S3 client, for seeding and checking only."""
    import boto3
    from azure.storage.blob import ContainerClient

    container = ContainerClient.from_connection_string(
        env["DEVSTACK_AZURE_CONNECTION_STRING"], "data", connection_verify=env["REQUESTS_CA_BUNDLE"],
        **container_options)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name=env["AWS_REGION"],
                      aws_access_key_id=env["DEVSTACK_AWS_ADMIN_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["DEVSTACK_AWS_ADMIN_SECRET_ACCESS_KEY"])
    return container, s3
