"""`python -m crosscloud list | get` as a user runs them, against the local cloud."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "crosscloud", *args], cwd=ROOT, capture_output=True,
                          env=env or dict(os.environ), timeout=120)


def test_list_json_and_table(env, prefix, azure_admin, aws_admin):
    azure_admin.upload_blob(f"{prefix}a b.txt", b"az", overwrite=True)
    aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=f"{prefix}a b.txt", Body=b"s3!")
    result = cli("list", "--prefix", prefix, "--json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    assert [(i["source"], i["key"], i["size"]) for i in items] == [
        ("azure", f"{prefix}a b.txt", 2), ("s3", f"{prefix}a b.txt", 3)]
    table = cli("list", "--prefix", prefix, "--source", "s3").stdout.decode()
    assert "SOURCE" in table
    assert f"{prefix}a b.txt" in table
    assert "1 objects" in table


def test_get_streams_to_a_file(env, prefix, azure_admin, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    azure_admin.upload_blob(f"{prefix}big.bin", data, overwrite=True)
    target = tmp_path / "out.bin"
    result = cli("get", "azure", f"{prefix}big.bin", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not list(tmp_path.glob(".*.part"))


def test_get_to_stdout(env, prefix, aws_admin):
    aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=f"{prefix}x/#?%+.txt", Body=b"odd name")
    result = cli("get", "s3", f"{prefix}x/#?%+.txt")
    assert result.returncode == 0
    assert result.stdout == b"odd name"


def test_errors_are_one_line_and_exit_non_zero(env, prefix):
    missing = cli("get", "s3", f"{prefix}missing")
    assert missing.returncode == 1
    assert b"no S3 object named" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = cli("get", "gcs", "key")
    assert bad.returncode == 2
    no_setting = cli("list", env={k: v for k, v in os.environ.items() if k != "S3_BUCKET"})
    assert no_setting.returncode == 1
    assert b"S3_BUCKET" in no_setting.stderr
