"""The doctor against the local cloud: a healthy setup, and each broken link named with its fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import boto3
import pytest

from crosscloud.doctor import runner
from crosscloud.stores import factory

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")
ACCESS_KEY = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


@pytest.fixture(scope="module")
def iam_admin(devstack_env: dict[str, str]):  # noqa: ANN201 - SDK type
    return boto3.client("iam", endpoint_url=devstack_env["AWS_ENDPOINT_URL_IAM"],
                        region_name=devstack_env["AWS_REGION"],
                        aws_access_key_id=devstack_env["DEVSTACK_AWS_ADMIN_ACCESS_KEY_ID"],
                        aws_secret_access_key=devstack_env["DEVSTACK_AWS_ADMIN_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def read_role_policy(iam_admin: Any) -> dict[str, Any]:
    """The read role's trust policy as deployed, exported the way an IAM reader would."""
    return iam_admin.get_role(RoleName="crosscloud-read")["Role"]["AssumeRolePolicyDocument"]


@pytest.fixture
def trust_file(tmp_path: Path, read_role_policy: dict[str, Any]) -> Path:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(read_role_policy))
    return path


def doctor(monkeypatch: pytest.MonkeyPatch, trust: Path | None = None, **settings: str) -> dict[str, Any]:
    """Run the doctor in-process with `settings` changed; returns {check name: check JSON}."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    factory.reset_for_tests()
    policy = runner.load_trust_policy(trust) if trust else None
    report = runner.run(trust_policy=policy, trust_policy_source=str(trust) if trust else None)
    doc = report.as_json()
    assert doc["ok"] is report.ok
    return {c["name"]: c for c in doc["checks"]}


def statuses(checks: dict[str, Any]) -> dict[str, str]:
    return {name: c["status"] for name, c in checks.items()}


def test_healthy_setup_passes_every_check_via_the_cli(env, trust_file, stats):
    before = stats()
    result = subprocess.run([sys.executable, "-m", "crosscloud", "doctor", "--json", "--trust-policy",
                             str(trust_file)], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert {c["name"]: c["status"] for c in doc["checks"]} == dict.fromkeys(
        ["settings", "identity", "storage_token", "container_list", "aws_token", "token_claims", "sts_exchange",
         "trust_policy", "s3_list", "backup_write", "restore_access"], "pass")
    claims = doc["checks"][5]["data"]["claims"]
    assert claims["aud"] == env["AWS_WEB_IDENTITY_AUDIENCE"]
    assert claims["iss"] == f"https://sts.windows.net/{env['DEVSTACK_TENANT_ID']}/"
    assert set(claims) == {"iss", "aud", "sub", "oid", "tid", "appid", "ver", "exp"}
    aws = doc["checks"][5]["data"]["aws"]
    assert aws["oidc_provider_arn"] in json.dumps(aws["trust_policy"])
    assert stats()["aws:AssumeRoleWithWebIdentity:ok"] > before.get("aws:AssumeRoleWithWebIdentity:ok", 0)
    for stream in (result.stdout, result.stderr):
        assert not JWT.search(stream)
        assert not ACCESS_KEY.search(stream)


def test_human_output_and_unreadable_trust_policy_without_file(env):
    result = subprocess.run([sys.executable, "-m", "crosscloud", "doctor"], cwd=ROOT, env=dict(os.environ),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr  # a warning is not a failure
    assert "WARN  trust_policy" in result.stdout
    assert "iam:GetRole" in result.stdout
    assert "--trust-policy FILE" in result.stdout
    assert "trust policy for this exact token" in result.stdout
    assert not JWT.search(result.stdout + result.stderr)


def test_backup_probe_leaves_nothing_behind(env, monkeypatch, aws_admin):
    bucket, prefix = env["BACKUP_S3_BUCKET"], env["BACKUP_S3_PREFIX"]
    checks = doctor(monkeypatch)
    assert checks["backup_write"]["status"] == "pass"
    assert "nothing left behind" in checks["backup_write"]["detail"]
    assert aws_admin.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []) == []
    keys = [o["Key"] for o in aws_admin.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert not [k for k in keys if "doctor-probe" in k]


def test_audience_unknown_to_entra(env, monkeypatch):
    audience = f"api://{env['DEVSTACK_TENANT_ID']}/no-such-app"
    checks = doctor(monkeypatch, AWS_WEB_IDENTITY_AUDIENCE=audience)
    assert statuses(checks) == {
        "settings": "pass", "identity": "pass", "storage_token": "pass", "container_list": "pass",
        "aws_token": "fail", "token_claims": "skip", "sts_exchange": "skip", "trust_policy": "skip",
        "s3_list": "skip", "backup_write": "skip", "restore_access": "skip"}
    failed = checks["aws_token"]
    assert failed["data"]["code"] == "AADSTS500011"
    assert f"no application with the App ID URI {audience} (AWS_WEB_IDENTITY_AUDIENCE)" in failed["detail"]
    assert "Application ID URI" in failed["fix"]
    assert "aws_token failed" in checks["s3_list"]["detail"]


def test_audience_entra_knows_but_aws_does_not_trust(env, monkeypatch, stats):
    audience = f"api://{env['DEVSTACK_TENANT_ID']}/other-app"
    checks = doctor(monkeypatch, AWS_WEB_IDENTITY_AUDIENCE=audience)
    assert checks["aws_token"]["status"] == "pass"
    assert checks["token_claims"]["data"]["claims"]["aud"] == audience
    sts = checks["sts_exchange"]
    assert sts["status"] == "fail"
    assert sts["data"]["code"] == "InvalidIdentityToken"
    assert "not in the IAM OIDC provider's client ID list" in sts["detail"]
    assert "add-client-id-to-open-id-connect-provider" in sts["fix"]
    assert f"--client-id {audience}" in sts["fix"]
    assert checks["s3_list"]["status"] == "skip"
    assert checks["backup_write"]["status"] == "skip"  # the token itself was refused: no second failure


def test_identity_the_trust_policy_does_not_admit(env, monkeypatch, trust_file):
    checks = doctor(monkeypatch, trust_file, AZURE_CLIENT_ID=env["DEVSTACK_OTHER_CLIENT_ID"])
    sub = checks["token_claims"]["data"]["claims"]["sub"]
    assert checks["sts_exchange"]["status"] == "fail"
    assert checks["sts_exchange"]["data"]["code"] == "AccessDenied"
    trust = checks["trust_policy"]
    assert trust["status"] == "fail"
    key = f"sts.windows.net/{env['DEVSTACK_TENANT_ID']}/"
    assert f"StringEquals {key}:sub expects" in trust["detail"]
    assert f'token has "{sub}"' in trust["detail"]
    assert f"add it to the {key}:sub condition" in trust["fix"]
    failed = trust["data"]["failed_conditions"]
    assert len(failed) == 1  # aud is right: only the subject is refused
    assert f"{key}:sub" in failed[0]


def test_identity_not_admitted_without_a_policy_file_still_says_what_to_check(env, monkeypatch):
    checks = doctor(monkeypatch, AZURE_CLIENT_ID=env["DEVSTACK_OTHER_CLIENT_ID"])
    sub = checks["token_claims"]["data"]["claims"]["sub"]
    assert checks["sts_exchange"]["status"] == "fail"
    assert f":sub = {sub}" in checks["sts_exchange"]["fix"]
    assert checks["trust_policy"]["status"] == "skip"
    assert "--trust-policy FILE" in checks["trust_policy"]["detail"]


def test_role_that_does_not_exist(env, monkeypatch, trust_file):
    missing = "arn:aws:iam::123456789012:role/crosscloud-no-such-role"
    checks = doctor(monkeypatch, trust_file, AWS_ROLE_ARN=missing)
    sts = checks["sts_exchange"]
    assert sts["status"] == "fail"
    assert sts["data"]["code"] == "AccessDenied"
    assert "the role does not exist" in sts["detail"]
    assert missing in sts["fix"]
    trust = checks["trust_policy"]
    assert trust["status"] == "pass"  # the policy is right, so the role itself is what is wrong
    assert f"AWS_ROLE_ARN ({missing}) most likely names a role that does not exist" in trust["detail"]
    assert checks["s3_list"]["status"] == "skip"


def test_trust_policy_without_sub_is_a_privilege_escalation_risk(env, monkeypatch, tmp_path, read_role_policy):
    unpinned = json.loads(json.dumps(read_role_policy))
    condition = unpinned["Statement"][0]["Condition"]["StringEquals"]
    for key in [k for k in condition if k.endswith(":sub")]:
        del condition[key]
    path = tmp_path / "no-sub.json"
    path.write_text(json.dumps({"Role": {"AssumeRolePolicyDocument": unpinned}}))  # `get-role` output form
    checks = doctor(monkeypatch, path)
    assert checks["sts_exchange"]["status"] == "pass"  # the deployed policy pins sub; the file does not
    trust = checks["trust_policy"]
    assert trust["status"] == "fail"
    assert "privilege-escalation risk" in trust["detail"]
    assert trust["data"]["subject_unconstrained"] is True
    sub = checks["token_claims"]["data"]["claims"]["sub"]
    assert f':sub": "{sub}"' in trust["fix"]


def test_http_diagnostics_returns_the_report(env):
    from blueprints.diagnostics import run_diagnostics

    factory.reset_for_tests()
    response = run_diagnostics(func.HttpRequest("GET", "http://localhost/api/diagnostics", body=b""))
    body = response.get_body().decode()
    assert response.status_code == 200, body
    doc = json.loads(body)
    assert doc["ok"] is True
    assert doc["summary"]["fail"] == 0
    assert not JWT.search(body)
    assert not ACCESS_KEY.search(body)


def test_trust_policy_read_with_the_roles_own_credentials(env, monkeypatch, iam_admin, read_role_policy):
    """A role allowed iam:GetRole on itself: the doctor reads and evaluates its trust policy unaided."""
    name = "crosscloud-doctor-self-read"
    arn = f"arn:aws:iam::123456789012:role/{name}"
    if not [r for r in iam_admin.list_roles()["Roles"] if r["RoleName"] == name]:
        iam_admin.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(read_role_policy))
        iam_admin.put_role_policy(RoleName=name, PolicyName="self-read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iam:GetRole", "Resource": arn},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{env['S3_BUCKET']}"}]}))
    checks = doctor(monkeypatch, AWS_ROLE_ARN=arn)
    trust = checks["trust_policy"]
    assert trust["status"] == "pass", trust
    assert trust["data"]["source"] == f"iam:GetRole {arn}"
    assert checks["s3_list"]["status"] == "pass"
