"""E2E fixtures: extra `devstack serve` hosts, and a scan of every function-level error body.

`served` is a host of the module's own, with the keys it has (`.devstack/env` once started)
and a `raw()` that sends a request target exactly as given (requests/urllib3 would normalise
dot segments before the host could).

Every HTTP response an e2e test receives passes through `requests.Session.send`; each
4xx/5xx answer of a function-level route (`/api/objects...`) is recorded and, after the
test, checked for anything that describes the deployment: account ID, role names, bucket,
storage account, container name, client and principal IDs, tenant. Those belong in the
logs and the admin diagnostics only (SPEC: HTTP API, errors).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ErrorBody:
    test: str
    url: str
    status: int
    text: str


def deployment_secrets(env: dict[str, str]) -> list[re.Pattern[str]]:
    """What must never reach a function-key caller, as patterns over an error body."""
    container_url = urlsplit(env["AZURE_STORAGE_CONTAINER_URL"])
    container = container_url.path.rstrip("/").rsplit("/", 1)[-1]
    account = container_url.path.strip("/").split("/")[0]
    literal = {env["AWS_ROLE_ARN"].split(":")[4], "arn:aws", env["S3_BUCKET"], env["BACKUP_S3_BUCKET"], account,
               env["AWS_ROLE_ARN"].rsplit("/", 1)[-1], env["AWS_BACKUP_ROLE_ARN"].rsplit("/", 1)[-1],
               env["AZURE_CLIENT_ID"], env["DEVSTACK_OTHER_CLIENT_ID"], env["DEVSTACK_SYSTEM_PRINCIPAL_ID"],
               env["DEVSTACK_TENANT_ID"], container_url.netloc, urlsplit(env["AWS_ENDPOINT_URL_S3"]).netloc}
    patterns = [re.compile(re.escape(value), re.IGNORECASE) for value in literal if value]
    # The container's name is a common word ("data"): it counts where it names the container.
    patterns.append(re.compile(rf"container\W+{container}\b|\b{container}\W+container|/{container}\b|"
                               rf"'{container}'", re.IGNORECASE))
    # Any GUID (client, principal, tenant IDs) and any 12-digit AWS account ID.
    patterns.append(re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE))
    patterns.append(re.compile(r"(?<!\d)\d{12}(?!\d)"))
    return patterns


@pytest.fixture(scope="session")
def scanned_errors() -> list[ErrorBody]:
    """Every function-level error body the e2e suite received, in order."""
    return []


@pytest.fixture(autouse=True)
def scan_error_bodies(request, devstack_env, scanned_errors, monkeypatch) -> Iterator[None]:
    original = requests.Session.send
    mine: list[ErrorBody] = []

    def send(self, prepared, **kwargs):  # noqa: ANN001, ANN202 - requests' own signature
        response = original(self, prepared, **kwargs)
        path = urlsplit(prepared.url).path.lower()
        if response.status_code >= 400 and path.startswith("/api/objects"):
            mine.append(ErrorBody(request.node.nodeid, prepared.url, response.status_code, response.text))
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    yield
    scanned_errors.extend(mine)
    patterns = deployment_secrets(devstack_env)
    leaks = [(e.status, e.url.split("?")[0], p.pattern, e.text) for e in mine for p in patterns if p.search(e.text)]
    assert not leaks, f"function-level error bodies reveal the deployment: {leaks}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def await_health(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    """Wait until a starting `devstack serve` answers /api/health; fail with its log if it dies."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(f"{url}/api/health", timeout=1)
            return
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"devstack serve did not start:\n{log.read_text()}")
            time.sleep(0.1)


@contextlib.contextmanager
def serving(log: Path, overrides: dict[str, str] | None = None, port: int | None = None) -> Iterator[str]:
    """`python -m devstack serve` with some app settings overridden; yields its base URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **(overrides or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devstack", "serve", "--port", str(port)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        await_health(url, proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def serve(devstack_env, tmp_path_factory) -> Iterator[Callable[..., str]]:
    """Start hosts for this module: `serve(overrides)` -> base URL; all stopped at module end."""
    with contextlib.ExitStack() as stack:
        def start(overrides: dict[str, str] | None = None) -> str:
            log = tmp_path_factory.mktemp("serve") / "serve.log"
            return stack.enter_context(serving(log, overrides))

        yield start


@dataclass
class Served:
    url: str
    port: int
    log: Path
    keys: dict[str, str]  # .devstack/env as it is once the host has started (function keys added)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def raw(self, method: str, target: str, headers: Mapping[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request with the target sent exactly as given."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def start_serve(log: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], Served]:
    """A host with exactly the environment `env`; the caller stops it with `stop`."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devstack", "serve", "--port", str(port)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, env=dict(env))
    url = f"http://127.0.0.1:{port}"
    await_health(url, proc, log)
    from devstack import envfile

    state = Path(env.get("DEVSTACK_DIR") or ROOT / ".devstack")
    return proc, Served(url, port, log, envfile.read(state / "env"))


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def served(devstack_env, tmp_path_factory) -> Iterator[Served]:
    """A host on a port of its own with the local cloud's settings."""
    proc, host = start_serve(tmp_path_factory.mktemp("serve") / "serve.log", os.environ)
    try:
        yield host
    finally:
        stop(proc)
