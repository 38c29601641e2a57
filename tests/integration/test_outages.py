"""A cloud that stops answering: listings and reads get 503 with Retry-After within
UPSTREAM_DEADLINE_SECONDS, whatever the SDKs' own timeouts and retries would allow.

The outage is real: the emulator's process group is paused with SIGSTOP (the kernel still
accepts connections, nothing answers: a hung service, not a refused port) and resumed with
SIGCONT in a `finally`, so the session's stack always comes back.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.integration.test_objects_api import body, call_get, call_list

pytestmark = pytest.mark.integration
DEADLINE = 8  # UPSTREAM_DEADLINE_SECONDS for these tests (default 15)
SLACK = 4  # thread scheduling, the error path, a loaded 2-CPU machine


@contextmanager
def paused(name: str) -> Iterator[None]:
    """SIGSTOP the devstack process `name` (devstack records pids in pids.json), SIGCONT after."""
    from devstack import stack

    pid = stack.running()[name]
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


@pytest.fixture
def bounded(env, monkeypatch):
    """A short deadline, and a read timeout far above it: the deadline must still win."""
    monkeypatch.setenv("UPSTREAM_DEADLINE_SECONDS", str(DEADLINE))
    monkeypatch.setenv("UPSTREAM_TIMEOUT_SECONDS", "600")
    return env


def answered_within(call, *args, **kwargs):  # noqa: ANN001, ANN201
    started = time.monotonic()
    response = call(*args, **kwargs)
    return response, time.monotonic() - started


@pytest.mark.parametrize(("source", "process"), [("azure", "azurite"), ("s3", "daemon")])
def test_a_listing_whose_cloud_hangs_is_503_within_the_deadline(bounded, azure_admin, aws_admin, prefix,
                                                                 source, process):
    azure_admin.upload_blob(prefix + "a.txt", b"a")
    aws_admin.put_object(Bucket=bounded["S3_BUCKET"], Key=prefix + "a.txt", Body=b"a")
    assert call_list(prefix=prefix).status_code == 200  # tokens and credentials cached: only the cloud hangs
    with paused(process):
        response, elapsed = answered_within(call_list, prefix=prefix)
    assert response.status_code == 503, body(response)
    assert response.headers["Retry-After"]
    assert body(response)["error"]["code"] == f"{source}_unavailable"
    assert "items" not in body(response)
    assert elapsed < DEADLINE + SLACK, f"answered after {elapsed:.1f} s"


@pytest.mark.parametrize(("source", "process"), [("azure", "azurite"), ("s3", "daemon")])
def test_a_read_whose_cloud_hangs_is_503_within_the_deadline(bounded, azure_admin, aws_admin, prefix,
                                                              source, process):
    azure_admin.upload_blob(prefix + "r.txt", b"r")
    aws_admin.put_object(Bucket=bounded["S3_BUCKET"], Key=prefix + "r.txt", Body=b"r")
    assert call_get(source, prefix + "r.txt").status_code == 200
    with paused(process):
        response, elapsed = answered_within(call_get, source, prefix + "r.txt")
    assert response.status_code == 503, body(response)
    assert response.headers["Retry-After"]
    assert body(response)["error"]["code"] == f"{source}_unavailable"
    assert elapsed < DEADLINE + SLACK, f"answered after {elapsed:.1f} s"
    assert call_get(source, prefix + "r.txt").status_code == 200  # resumed: the same store answers again
