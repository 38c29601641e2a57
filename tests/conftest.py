"""Shared fixtures. Integration and e2e tests get the local cloud via `devstack_env`.

If a stack is already running (`python -m devstack up`), tests use it and leave it up;
otherwise the session starts one and stops it at the end, also when tests fail or the
run is interrupted.
"""

from __future__ import annotations

import atexit
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def devstack_env() -> Iterator[dict[str, str]]:
    from devstack import envfile, stack

    started_here = False
    if not stack.running():
        try:
            stack.check_tools()
        except stack.StackError as exc:
            pytest.fail(f"local cloud unavailable: {exc}")
        atexit.register(stack.down)  # even if the session dies before teardown
        stack.up()
        started_here = True
    saved = dict(os.environ)
    values = envfile.apply()
    try:
        yield values
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if started_here:
            stack.down()


@pytest.fixture
def env(devstack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The devstack settings are in os.environ (change them with monkeypatch); fresh SDK clients."""
    from crosscloud.stores import factory

    factory.reset_for_tests()
    yield devstack_env
    factory.reset_for_tests()


@pytest.fixture
def prefix() -> str:
    """A unique key prefix so tests sharing the container and bucket never see each other."""
    return f"t-{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def azure_admin(devstack_env: dict[str, str]):  # noqa: ANN201 - SDK type
    """Shared-key access to the container, for seeding and checking (not the app's path)."""
    from azure.storage.blob import ContainerClient

    from devstack import config

    return ContainerClient.from_connection_string(
        devstack_env["DEVSTACK_AZURE_CONNECTION_STRING"], config.CONTAINER,
        connection_verify=devstack_env["REQUESTS_CA_BUNDLE"])


@pytest.fixture
def aws_admin(devstack_env: dict[str, str]):  # noqa: ANN201 - SDK type
    """An IAM admin's S3 client, for seeding and checking (not the app's path)."""
    import boto3

    return boto3.client(
        "s3", endpoint_url=devstack_env["AWS_ENDPOINT_URL_S3"], region_name=devstack_env["AWS_REGION"],
        aws_access_key_id=devstack_env["DEVSTACK_AWS_ADMIN_ACCESS_KEY_ID"],
        aws_secret_access_key=devstack_env["DEVSTACK_AWS_ADMIN_SECRET_ACCESS_KEY"])


@pytest.fixture
def stats(devstack_env: dict[str, str]):  # noqa: ANN201
    """Read the local cloud's counters (tokens issued, STS calls)."""
    import requests

    def read() -> dict[str, int]:
        return requests.get(devstack_env["DEVSTACK_STATS_URL"], timeout=5).json()

    return read
