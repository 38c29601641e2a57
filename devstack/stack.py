"""`devstack up` / `down`: start, provision and stop the local cloud.

Processes are started in their own sessions and recorded in `pids.json`; `down` stops the
whole process group of each, so nothing outlives the stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devstack import certs, config, envfile, provision


class StackError(RuntimeError):
    """A reason the stack cannot start, phrased for the person who typed the command."""


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((config.HOST, port)) == 0


def _wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}; last log lines:\n{_tail(log)}")
        if port_in_use(port):
            return
        time.sleep(0.1)
    raise StackError(f"{name} did not open {config.HOST}:{port} in time; last log lines:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pids_file() -> Path:
    return config.state_dir() / "pids.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> dict[str, int]:
    """The stack's recorded processes that are still alive."""
    try:
        pids = json.loads(_pids_file().read_text())
    except (OSError, ValueError):
        return {}
    return {name: pid for name, pid in pids.items() if _alive(pid)}


def check_tools() -> None:
    if shutil.which("node") is None:
        raise StackError("Node.js is required for Azurite but `node` is not on PATH "
                         "(install Node.js 18+).")
    if not config.azurite_bin().exists():
        raise StackError(f"Azurite is not installed at {config.azurite_bin()}: run `make tools` "
                         "(installs it from npm into .tools/node).")


def up(token_ttl: int = 3600) -> dict[str, str]:
    """Start and provision the stack; returns the env values written to `.devstack/env`."""
    started = time.monotonic()
    state = config.state_dir()
    ports = config.Ports.from_env()
    if running():
        print(f"devstack is already running (state in {state}); `python -m devstack down` stops it.")
        return envfile.read()
    check_tools()
    for name, port in (("Azurite", ports.azurite), ("Azurite queues", ports.queue),
                       ("AWS emulator", ports.aws), ("identity endpoint", ports.identity)):
        if port_in_use(port):
            raise StackError(f"port {config.HOST}:{port} for the {name} is already in use; stop "
                             "whatever holds it or set DEVSTACK_PORT_OFFSET to shift all ports.")
    for stale in ("ready.json", "aws-admin.json", "env"):
        (state / stale).unlink(missing_ok=True)
    shutil.rmtree(state / "azurite", ignore_errors=True)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    tls = certs.ensure_tls(state / "tls")
    identity_header = secrets.token_urlsafe(24)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["daemon"] = _spawn(
            [sys.executable, "-m", "devstack.daemon", "--state", str(state),
             "--aws-port", str(ports.aws), "--identity-port", str(ports.identity),
             f"--identity-header={identity_header}", "--token-ttl", str(token_ttl)],
            state / "logs" / "daemon.log",
        )
        procs["azurite"] = _spawn(
            [str(config.azurite_bin()), "--blobHost", config.HOST, "--blobPort", str(ports.azurite),
             "--location", str(state / "azurite"), "--oauth", "basic",
             "--cert", str(tls["cert"]), "--key", str(tls["key"]),
             "--skipApiVersionCheck", "--disableProductStyleUrl", "--silent"],
            state / "logs" / "azurite.log",
        )
        procs["azurite-queue"] = _spawn(
            [str(config.azurite_bin("queue")), "--queueHost", config.HOST, "--queuePort", str(ports.queue),
             "--location", str(state / "azurite"), "--oauth", "basic",
             "--cert", str(tls["cert"]), "--key", str(tls["key"]),
             "--skipApiVersionCheck", "--disableProductStyleUrl", "--silent"],
            state / "logs" / "azurite-queue.log",
        )
        _pids_file().write_text(json.dumps({n: p.pid for n, p in procs.items()}))
        deadline = time.monotonic() + 60
        _wait_port(ports.azurite, deadline, procs["azurite"], "Azurite", state / "logs" / "azurite.log")
        _wait_port(ports.queue, deadline, procs["azurite-queue"], "Azurite queues",
                   state / "logs" / "azurite-queue.log")
        while not (state / "ready.json").exists():
            if procs["daemon"].poll() is not None or time.monotonic() > deadline:
                raise StackError("the identity endpoint / AWS emulator failed to start; last log "
                                 f"lines:\n{_tail(state / 'logs' / 'daemon.log')}")
            time.sleep(0.1)
        blob_endpoint = f"https://{config.HOST}:{ports.azurite}/{config.AZURE_ACCOUNT}"
        queue_endpoint = f"https://{config.HOST}:{ports.queue}/{config.AZURE_ACCOUNT}"
        conn_str = provision.connection_string(blob_endpoint, queue_endpoint)
        provision.provision_azure(conn_str, tls["bundle"])
    except BaseException:
        _stop(procs_pids={n: p.pid for n, p in procs.items()})
        raise
    admin = json.loads((state / "aws-admin.json").read_text())
    aws_url = f"http://{config.HOST}:{ports.aws}"
    host_key = secrets.token_urlsafe(32)
    values = {
        "AZURE_CLIENT_ID": config.APP_IDENTITY.client_id,
        "AZURE_STORAGE_CONTAINER_URL": f"{blob_endpoint}/{config.CONTAINER}",
        "AWS_ROLE_ARN": f"arn:aws:iam::{config.ACCOUNT_ID}:role/{config.READ_ROLE}",
        "AWS_WEB_IDENTITY_AUDIENCE": config.AUDIENCE,
        "AWS_REGION": config.REGION,
        "S3_BUCKET": config.S3_BUCKET,
        "BACKUP_SCHEDULE": "0 0 2 * * *",
        "BACKUP_S3_BUCKET": config.S3_BUCKET,
        "BACKUP_S3_PREFIX": config.BACKUP_PREFIX,
        "AWS_BACKUP_ROLE_ARN": f"arn:aws:iam::{config.ACCOUNT_ID}:role/{config.BACKUP_ROLE}",
        "AWS_RESTORE_ROLE_ARN": f"arn:aws:iam::{config.ACCOUNT_ID}:role/{config.RESTORE_ROLE}",
        "AWS_ENDPOINT_URL_STS": aws_url,
        "AWS_ENDPOINT_URL_S3": aws_url,
        "AWS_ENDPOINT_URL_IAM": aws_url,
        "IDENTITY_ENDPOINT": f"http://{config.HOST}:{ports.identity}/msi/token",
        "IDENTITY_HEADER": identity_header,
        "REQUESTS_CA_BUNDLE": str(tls["bundle"]),
        # The backup fan-out queue, as an identity-based connection (like AzureWebJobsStorage__*).
        "BACKUP_QUEUE_NAME": config.SHARD_QUEUE,
        "CROSSCLOUD_QUEUE__queueServiceUri": queue_endpoint,
        "CROSSCLOUD_QUEUE__credential": "managedidentity",
        "CROSSCLOUD_QUEUE__clientId": config.APP_IDENTITY.client_id,
        "DEVSTACK_AZURE_CONNECTION_STRING": conn_str,
        "DEVSTACK_AWS_ADMIN_ACCESS_KEY_ID": admin["access_key_id"],
        "DEVSTACK_AWS_ADMIN_SECRET_ACCESS_KEY": admin["secret_access_key"],
        "DEVSTACK_OTHER_CLIENT_ID": config.OTHER_IDENTITY.client_id,
        "DEVSTACK_SYSTEM_PRINCIPAL_ID": config.SYSTEM_IDENTITY.principal_id,
        "DEVSTACK_TENANT_ID": config.TENANT_ID,
        "DEVSTACK_ISSUER_KEY": str(state / "identity" / "signing-key.pem"),
        "DEVSTACK_STATS_URL": f"http://{config.HOST}:{ports.identity}/devstack/stats",
        # The host's keys (devstack/host/keys.py); serve adds DEVSTACK_FUNCTION_KEY_<NAME> per function.
        "DEVSTACK_MASTER_KEY": secrets.token_urlsafe(32),
        "DEVSTACK_HOST_KEY": host_key,
        "DEVSTACK_FUNCTION_KEY": host_key,  # the default host key under its older name
        "DEVSTACK_FUNCTIONS_URL": f"http://{config.HOST}:{ports.functions}",
    }
    envfile.write(values)
    elapsed = time.monotonic() - started
    print(f"devstack up in {elapsed:.1f}s: Azurite https://{config.HOST}:{ports.azurite} (queues "
          f":{ports.queue}), "
          f"AWS {aws_url}, identity http://{config.HOST}:{ports.identity}; settings in "
          f"{envfile.path()}")
    return values


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(config.REPO_ROOT), env.get("PYTHONPATH")]))
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=config.REPO_ROOT, env=env, start_new_session=True)


def _stop(procs_pids: dict[str, int], timeout: float = 3) -> None:
    """SIGTERM each process group, then SIGKILL what is left (Azurite lingers ~9 s on keep-alives)."""
    for pid in procs_pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in procs_pids.values()):
        for pid in procs_pids.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    for pid in procs_pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def down() -> bool:
    """Stop everything `up` started. Returns False when nothing was running."""
    try:
        pids = json.loads(_pids_file().read_text())
    except (OSError, ValueError):
        pids = {}
    _stop(pids)
    state = config.state_dir()
    for name in ("pids.json", "ready.json", "env", "aws-admin.json"):
        (state / name).unlink(missing_ok=True)
    return bool(pids)
