"""`credential-process` for real: the AWS CLI (pip awscli) lists the bucket through devstack,
and a second CLI call is served from the per-user cache without an STS call."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".venv-tools" / "awscli"  # its own venv: awscli v1 pins botocore; `make tools` installs it


@pytest.fixture(scope="session")
def aws_cli() -> Path:
    """The AWS CLI v1 from PyPI in its own venv (`make tools` installs it; installed here if missing)."""
    aws = TOOLS / "bin" / "aws"
    if not aws.exists():
        try:
            if not (TOOLS / "bin" / "pip").exists():
                subprocess.run(["python3", "-m", "venv", str(TOOLS)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(TOOLS / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                            "awscli==1.46.3"], check=True, capture_output=True, text=True, timeout=600)
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"could not install the AWS CLI into {TOOLS}: {exc.stderr or exc.stdout}")
    return aws


def cli_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The process environment for the AWS CLI: devstack endpoints, no AWS keys, a private cache."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_SESSION",
                                                                      "AWS_PROFILE", "AWS_DEFAULT_PROFILE"))}
    child.update(AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                 CROSSCLOUD_CACHE_DIR=str(tmp_path / "cache"), AWS_EC2_METADATA_DISABLED="true")
    return child


def private_cache(tmp_path: Path) -> Path:
    """The tool's own directory inside CROSSCLOUD_CACHE_DIR (see `cli_env`)."""
    return tmp_path / "cache" / f"crosscloud-{os.getuid()}"


def write_profile(env: dict[str, str], tmp_path: Path, *extra: str) -> None:
    command = (f"env PYTHONPATH={ROOT} {sys.executable} -m crosscloud credential-process "
               f"--role-arn {env['AWS_ROLE_ARN']} --audience {env['AWS_WEB_IDENTITY_AUDIENCE']} "
               f"--region {env['AWS_REGION']} " + " ".join(extra))
    (tmp_path / "config").write_text(f"[profile crosscloud]\nregion = {env['AWS_REGION']}\n"
                                     f"credential_process = {command}\n")


def aws_ls(aws: Path, env: dict[str, str], child: dict[str, str], prefix: str) -> subprocess.CompletedProcess[str]:
    """`aws s3 ls`, run outside the repo so the profile's command must stand on its own."""
    return subprocess.run([str(aws), "--profile", "crosscloud", "s3", "ls", f"s3://{env['S3_BUCKET']}/{prefix}",
                           "--endpoint-url", env["AWS_ENDPOINT_URL_S3"]], env=child,
                          cwd=Path(child["AWS_CONFIG_FILE"]).parent, capture_output=True, text=True, timeout=120)


def test_aws_cli_lists_the_bucket_and_reuses_cached_credentials(env, tmp_path, aws_admin, prefix, stats, aws_cli):
    aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=f"{prefix}hello.txt", Body=b"hello from S3")
    write_profile(env, tmp_path, f"--client-id {env['AZURE_CLIENT_ID']}")
    child = cli_env(env, tmp_path)

    before = stats().get("aws:AssumeRoleWithWebIdentity", 0)
    first = aws_ls(aws_cli, env, child, prefix)
    assert first.returncode == 0, first.stderr
    assert "hello.txt" in first.stdout
    after_first = stats().get("aws:AssumeRoleWithWebIdentity", 0)
    assert after_first == before + 1

    second = aws_ls(aws_cli, env, child, prefix)
    assert second.returncode == 0, second.stderr
    assert "hello.txt" in second.stdout
    assert stats().get("aws:AssumeRoleWithWebIdentity", 0) == after_first  # served from the cache

    cache = private_cache(tmp_path)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o600


def test_aws_cli_shows_the_explained_refusal(env, tmp_path, aws_cli):
    write_profile(env, tmp_path, f"--client-id {env['DEVSTACK_OTHER_CLIENT_ID']}")
    child = cli_env(env, tmp_path)
    result = aws_ls(aws_cli, env, child, "")
    assert result.returncode != 0
    assert "AccessDenied" in result.stderr
    assert env["AWS_ROLE_ARN"] in result.stderr
    assert list(private_cache(tmp_path).glob("*.json")) == []  # nothing cached for a refusal


def run_process(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    child = cli_env(env, tmp_path)
    return subprocess.run([sys.executable, "-m", "crosscloud", "credential-process", *args], cwd=ROOT, env=child,
                          capture_output=True, text=True, timeout=60)


def test_each_identity_gets_its_own_cache_entry(env, tmp_path, stats):
    before = stats().get("aws:AssumeRoleWithWebIdentity:ok", 0)
    user = run_process(env, tmp_path)  # AZURE_CLIENT_ID from the app settings
    system = run_process(env, tmp_path, "--system-assigned")
    again = run_process(env, tmp_path)
    for result in (user, system, again):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    docs = [json.loads(r.stdout) for r in (user, system, again)]
    assert all(d["Version"] == 1 and d["Expiration"].endswith("Z") for d in docs)
    assert docs[0]["AccessKeyId"] != docs[1]["AccessKeyId"]
    assert docs[2] == docs[0]
    assert stats().get("aws:AssumeRoleWithWebIdentity:ok", 0) == before + 2
    assert len(list(private_cache(tmp_path).glob("*.json"))) == 2


def test_errors_are_one_line_on_stderr(env, tmp_path):
    result = run_process(env, tmp_path, "--audience", f"api://{env['DEVSTACK_TENANT_ID']}/no-such-app")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "AADSTS500011" in result.stderr
    assert "--audience" in result.stderr


def test_eight_processes_started_at_once_make_one_sts_call(env, tmp_path, stats):
    """A cold cache in a shared (1777) CROSSCLOUD_CACHE_DIR: the entry's lock lets one process
    call STS while the seven others wait and read what it cached; the shared dir keeps its mode."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # noqa: S103 - a /tmp-like directory is the case under test
    child = {**cli_env(env, tmp_path), "CROSSCLOUD_CACHE_DIR": str(shared)}
    before = stats().get("aws:AssumeRoleWithWebIdentity", 0)
    procs = [subprocess.Popen([sys.executable, "-m", "crosscloud", "credential-process"], cwd=ROOT, env=child,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    for (_, err), code in results:
        assert code == 0, err
    docs = [json.loads(out) for (out, _), _ in results]
    assert all(d == docs[0] for d in docs)
    assert stats().get("aws:AssumeRoleWithWebIdentity", 0) == before + 1
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    private = shared / f"crosscloud-{os.getuid()}"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert len(list(private.glob("*.json"))) == 1
