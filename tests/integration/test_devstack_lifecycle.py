"""`devstack up` / `down` as a user runs them: no orphan process or port, clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# A second stack beside the session's, on its own ports and state dir (relative to the session's own offset,
# so parallel checkouts that each set DEVSTACK_PORT_OFFSET never collide).
OFFSET = int(os.environ.get("DEVSTACK_PORT_OFFSET", "0")) + 50


def _run(args: list[str], state: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEVSTACK_DIR": str(state), "DEVSTACK_PORT_OFFSET": str(OFFSET)}
    return subprocess.run([sys.executable, "-m", "devstack", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((config.HOST, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_up_then_down_leaves_no_process_and_no_port(tmp_path):
    ports = [p + OFFSET for p in (10000, 10001, 4566, 8181)]  # blob, queue, AWS, identity
    up = _run(["up"], tmp_path)
    assert up.returncode == 0, up.stderr
    assert "devstack up in" in up.stdout
    pids = json.loads((tmp_path / "pids.json").read_text())
    try:
        assert all(_listening(p) for p in ports)
        env = (tmp_path / "env").read_text()
        assert f"AWS_ENDPOINT_URL_S3=http://127.0.0.1:{4566 + OFFSET}" in env
        assert "DEVSTACK_FUNCTION_KEY=" in env
        again = _run(["up"], tmp_path)
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        down = _run(["down"], tmp_path)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in pids.values())
    assert not any(_listening(p) for p in ports)
    assert not (tmp_path / "env").exists()


def test_busy_port_is_a_clear_error_not_a_hang(tmp_path):
    with socket.socket() as blocker:
        blocker.bind((config.HOST, 4566 + OFFSET))
        blocker.listen()
        result = _run(["up"], tmp_path, timeout=30)
    assert result.returncode == 2
    assert f"127.0.0.1:{4566 + OFFSET}" in result.stderr
    assert "AWS emulator" in result.stderr
    assert not (tmp_path / "pids.json").exists()


def test_missing_azurite_is_a_clear_error(tmp_path, monkeypatch):
    from devstack import stack

    monkeypatch.setattr(config, "azurite_bin", lambda: tmp_path / "no-azurite")
    with pytest.raises(stack.StackError, match="make tools"):
        stack.check_tools()
