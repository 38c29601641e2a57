"""The doctor without a cloud: recorded Entra/Azure refusals, claims, mapping, report shape."""

from __future__ import annotations

import functools
import json
from urllib.parse import quote

import azure.functions as func
import pytest
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from crosscloud.auth import identity
from crosscloud.doctor import aws, azure, entra_errors, model, runner, token_claims
from crosscloud.stores import azure as azure_store
from crosscloud.stores import factory
from tests.unit import recorded
from tests.unit.recorded import Recorded, ReplayAdapter

SETTINGS = {
    "AZURE_CLIENT_ID": recorded.CLIENT_ID,
    "AZURE_STORAGE_CONTAINER_URL": "https://contosodata.blob.core.windows.net/data",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/crosscloud-read",
    "AWS_WEB_IDENTITY_AUDIENCE": recorded.AUDIENCE,
    "AWS_REGION": "eu-west-1",
    "S3_BUCKET": "contoso-data",
}
STORAGE_TOKEN = "msi/token?api-version=2019-08-01&resource=https://storage.azure.com"
AWS_TOKEN = f"msi/token?api-version=2019-08-01&resource={recorded.AUDIENCE}"


@pytest.fixture
def app_settings(monkeypatch):
    for name in ("AWS_BACKUP_ROLE_ARN", "BACKUP_S3_BUCKET", "BACKUP_S3_PREFIX", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MSI_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IDENTITY_ENDPOINT", recorded.IDENTITY_ENDPOINT)
    monkeypatch.setenv("IDENTITY_HEADER", "recorded-header")
    factory.reset_for_tests()
    yield
    factory.reset_for_tests()


def replay(monkeypatch, recordings: dict[str, Recorded]) -> ReplayAdapter:
    """Route the managed identity and Blob Storage through recorded responses."""
    adapter = ReplayAdapter(recordings)
    monkeypatch.setattr(identity, "managed_identity", lambda client_id: ManagedIdentityCredential(
        client_id=client_id, transport=recorded.transport(adapter)))
    monkeypatch.setattr(azure_store, "BlobServiceClient",
                        functools.partial(BlobServiceClient, transport=recorded.transport(adapter)))
    return adapter


def by_name(report: runner.Report) -> dict[str, runner.Check]:
    return {c.name: c for c in report.checks}


# --- recorded Entra and Azure refusals through the real SDKs ------------------------------------
@pytest.mark.parametrize(("message", "code", "cause", "fix"), [
    (recorded.AADSTS500011, "AADSTS500011", "no application with the App ID URI", "Application ID URI"),
    (recorded.AADSTS501051, "AADSTS501051", "requires app role assignment", "assign one of the API's app roles"),
    (recorded.AADSTS90009, "AADSTS90009", "identifier URI form", "api://<api-app-id>"),
])
def test_entra_refusal_for_the_aws_audience_is_mapped_and_later_checks_skip(
        app_settings, monkeypatch, message, code, cause, fix):
    replay(monkeypatch, {STORAGE_TOKEN: recorded.token_response("https://storage.azure.com"),
                         AWS_TOKEN: recorded.refusal(message),
                         "comp=list": Recorded(200, _empty_listing(), {"Content-Type": "application/xml"})})
    report = runner.run()
    checks = by_name(report)
    assert [c.status for c in report.checks[:4]] == ["pass", "pass", "pass", "pass"]
    aws = checks["aws_token"]
    assert aws.status == "fail"
    assert aws.data["code"] == code
    assert cause in aws.detail
    assert "AWS_WEB_IDENTITY_AUDIENCE" in aws.detail + aws.fix
    assert fix in aws.fix
    assert "Trace ID" not in aws.detail  # Entra's sentence, without the noise
    for name in ("token_claims", "sts_exchange", "trust_policy", "s3_list", "backup_write"):
        assert checks[name].status == "skip", name
        assert "aws_token failed" in checks[name].detail or "needs aws_token" in checks[name].detail
    assert not report.ok


def test_azure_permission_mismatch_names_the_missing_role_and_the_identity(app_settings, monkeypatch):
    adapter = replay(monkeypatch, {
        STORAGE_TOKEN: recorded.token_response("https://storage.azure.com"),
        AWS_TOKEN: recorded.refusal(recorded.AADSTS500011),
        "comp=list": Recorded(403, recorded.AUTHORIZATION_PERMISSION_MISMATCH, {
            "Content-Type": "application/xml", "x-ms-error-code": "AuthorizationPermissionMismatch"}),
    })
    report = runner.run()
    container = by_name(report)["container_list"]
    assert container.status == "fail"
    assert container.data["code"] == "azure_forbidden"
    assert "Storage Blob Data Reader" in container.detail
    assert recorded.CLIENT_ID in container.detail  # the identity, by client ID
    assert f"--assignee-object-id {recorded.PRINCIPAL}" in container.fix  # and by principal, ready to paste
    assert "storageAccounts/contosodata/blobServices/default/containers/data" in container.fix
    assert any("comp=list" in url for url in adapter.urls)  # the SDK really sent the request


def test_report_never_contains_the_tokens(app_settings, monkeypatch):
    storage = recorded.token_response("https://storage.azure.com")
    replay(monkeypatch, {STORAGE_TOKEN: storage, AWS_TOKEN: recorded.refusal(recorded.AADSTS501051),
                         "comp=list": Recorded(200, _empty_listing(), {"Content-Type": "application/xml"})})
    report = runner.run()
    token = json.loads(storage.body)["access_token"]
    text = json.dumps(report.as_json()) + runner.render_text(report)
    assert token not in text
    assert token.split(".")[1] not in text


def _empty_listing() -> str:
    return ('\ufeff<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint='
            '"https://contosodata.blob.core.windows.net/" ContainerName="data"><MaxResults>1</MaxResults>'
            "<Blobs /><NextMarker /></EnumerationResults>")


# --- settings ----------------------------------------------------------------------------------
def test_missing_and_malformed_settings_are_named_and_dependents_skip(monkeypatch):
    env = {"AZURE_CLIENT_ID": "not-a-guid", "AWS_ROLE_ARN": "arn:aws:iam::1:role/x", "AWS_REGION": "eu-west-1"}
    report = runner.run(env=env)
    checks = by_name(report)
    settings = checks["settings"]
    assert settings.status == "fail"
    for name in ("AZURE_CLIENT_ID", "AZURE_STORAGE_CONTAINER_URL", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_AUDIENCE",
                 "S3_BUCKET"):
        assert name in settings.detail
    assert checks["identity"].status == "skip"
    assert "AZURE_CLIENT_ID" in checks["identity"].detail
    assert all(c.status == "skip" for c in report.checks[1:])
    assert "AZURE_CLIENT_ID is missing or malformed" in checks["s3_list"].detail


def test_ambient_aws_keys_are_a_warning(monkeypatch):
    env = dict(SETTINGS, AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE")
    outcome = azure.check_settings(model.Context(env=env, settings=runner.Settings(env)))
    assert outcome.status == "warn"
    assert "AWS_ACCESS_KEY_ID" in outcome.detail


@pytest.mark.parametrize(("env", "expected"), [
    ({"IDENTITY_ENDPOINT": "http://x/msi/token", "IDENTITY_HEADER": "h"}, "App Service"),
    ({"IDENTITY_ENDPOINT": "http://x", "IDENTITY_HEADER": "h", "IDENTITY_SERVER_THUMBPRINT": "t"}, "Service Fabric"),
    ({"IDENTITY_ENDPOINT": "http://x", "IMDS_ENDPOINT": "http://y"}, "Azure Arc"),
    ({"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"}, "workload identity"),
    ({"MSI_ENDPOINT": "http://localhost:50342/oauth2/token"}, "Cloud Shell"),
    ({"IDENTITY_ENDPOINT": "http://x"}, "no usable source"),
    ({}, "IMDS"),
])
def test_endpoint_kind(env, expected):
    assert expected in azure.endpoint_kind(env)


# --- claims and what AWS must hold -------------------------------------------------------------
def test_v1_claims_and_ready_to_paste_trust_policy():
    claims = token_claims.decode_claims(recorded.fake_jwt(aud=recorded.AUDIENCE))
    assert token_claims.issuer_version(claims["iss"]) == "v1"
    assert list(token_claims.shown_claims(claims)) == ["iss", "aud", "sub", "oid", "tid", "appid", "ver", "exp"]
    trust = token_claims.aws_trust(claims, "123456789012")
    key = f"sts.windows.net/{recorded.TENANT}/"
    assert trust.provider_url == f"https://{key}"
    assert trust.provider_arn == f"arn:aws:iam::123456789012:oidc-provider/{key}"
    assert trust.client_id == recorded.AUDIENCE
    statement = trust.trust_policy["Statement"][0]
    assert statement["Principal"] == {"Federated": trust.provider_arn}
    assert statement["Condition"] == {"StringEquals": {f"{key}:aud": recorded.AUDIENCE,
                                                       f"{key}:sub": recorded.PRINCIPAL}}
    from crosscloud.doctor import trust_policy
    context = trust_policy.context_from_claims(claims["iss"], claims)
    assert trust_policy.evaluate(trust.trust_policy, trust.provider_arn, context).allowed
    assert not trust_policy.subject_unconstrained(trust.trust_policy, trust.provider_arn, key)


def test_v2_token_is_detected_and_its_guid_audience_explained():
    app_id = "00001111-aaaa-2222-bbbb-3333cccc4444"
    token = recorded.fake_jwt(iss=f"https://login.microsoftonline.com/{recorded.TENANT}/v2.0", aud=app_id,
                              ver="2.0", azp=recorded.CLIENT_ID)
    ctx = model.Context(env={}, settings=runner.Settings({}), token=token)
    ctx.values.update(AWS_ROLE_ARN=SETTINGS["AWS_ROLE_ARN"], AWS_WEB_IDENTITY_AUDIENCE=recorded.AUDIENCE,
                      AZURE_CLIENT_ID=recorded.CLIENT_ID)
    ctx.statuses["aws_token"] = "pass"
    outcome = azure.check_claims(ctx)
    assert outcome.data["issuer_version"] == "v2"
    assert outcome.status == "warn"
    assert "v2 token" in outcome.detail
    assert app_id in outcome.detail
    assert outcome.data["aws"]["oidc_provider_url"] == f"https://login.microsoftonline.com/{recorded.TENANT}/v2.0"
    assert outcome.data["aws"]["client_id"] == app_id


def test_token_issued_to_another_client_is_flagged():
    token = recorded.fake_jwt(aud=recorded.AUDIENCE, appid="99999999-9999-4999-8999-999999999999")
    ctx = model.Context(env={}, settings=runner.Settings({}), token=token)
    ctx.values.update(AWS_WEB_IDENTITY_AUDIENCE=recorded.AUDIENCE, AZURE_CLIENT_ID=recorded.CLIENT_ID)
    ctx.statuses["aws_token"] = "pass"
    outcome = azure.check_claims(ctx)
    assert outcome.status == "warn"
    assert "not AZURE_CLIENT_ID" in outcome.detail
    assert "<account-id>" in outcome.data["aws"]["oidc_provider_arn"]  # no valid AWS_ROLE_ARN to take it from


def test_not_a_jwt():
    with pytest.raises(ValueError, match="JWT"):
        token_claims.decode_claims("opaque-token")
    with pytest.raises(ValueError, match="base64url"):
        token_claims.decode_claims("a.!!!.c")


# --- Entra and STS error mapping ---------------------------------------------------------------
def test_entra_code_is_found_inside_azure_identity_wrapping():
    wrapped = ("App Service managed identity configuration not found in environment. Token request error: "
               f"(invalid_scope) 400, {recorded.AADSTS500011}")
    problem = entra_errors.explain(wrapped, resource=recorded.AUDIENCE, who="the identity",
                                   setting="AWS_WEB_IDENTITY_AUDIENCE")
    assert problem.code == "AADSTS500011"
    assert problem.entra_message.startswith("The resource principal named api://contoso-crosscloud")
    assert "Trace ID" not in problem.entra_message
    assert problem.fix.startswith("set AWS_WEB_IDENTITY_AUDIENCE")


@pytest.mark.parametrize(("message", "code"), [
    ("AADSTS50001: The application named api://x was not found in the tenant named y.", "AADSTS50001"),
    ("AADSTS70011: The provided value for the input parameter 'scope' is not valid.", "AADSTS70011"),
    ("AADSTS500014: The service principal for resource 'api://x' is disabled.", "AADSTS500014"),
    ("No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
     "identity_not_found"),
    ("ManagedIdentityCredential authentication unavailable. No identity has been assigned to this resource.",
     "identity_unavailable"),
    ("AADSTS99999: Something new.", "AADSTS99999"),
])
def test_other_entra_and_endpoint_errors(message, code):
    problem = entra_errors.explain(message, resource="api://x", who="the identity", setting="S")
    assert problem.code == code
    assert problem.fix


def _sts_context() -> azure.Context:
    ctx = model.Context(env={}, settings=runner.Settings({}))
    ctx.claims = token_claims.decode_claims(recorded.fake_jwt(aud=recorded.AUDIENCE))
    ctx.trust = token_claims.aws_trust(ctx.claims, "123456789012")
    ctx.values["AWS_ROLE_ARN"] = SETTINGS["AWS_ROLE_ARN"]
    return ctx


@pytest.mark.parametrize(("code", "message", "expected"), [
    ("InvalidIdentityToken", f"No OpenIDConnect provider found in your account for https://sts.windows.net/"
     f"{recorded.TENANT}/", "create-open-id-connect-provider --url https://sts.windows.net/"),
    ("InvalidIdentityToken", "Incorrect token audience", f"--client-id {recorded.AUDIENCE}"),
    ("IDPCommunicationError", "Couldn't retrieve verification key from your identity provider", "JWKS"),
    ("ExpiredTokenException", "Token expired: current date/time 2 must be before 1", "clock"),
    ("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", f":sub = {recorded.PRINCIPAL}"),
])
def test_sts_errors_get_a_concrete_fix(code, message, expected):
    assert expected in aws._sts_fix(code, message, _sts_context())


# --- trust policy file loading -----------------------------------------------------------------
def test_trust_policy_file_forms(tmp_path):
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
                                                   "Principal": {"Federated": "arn"}}]}
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(doc))
    get_role = tmp_path / "get-role.json"
    get_role.write_text(json.dumps({"Role": {"RoleName": "r", "AssumeRolePolicyDocument": doc}}))
    encoded = tmp_path / "encoded.txt"
    encoded.write_text(quote(json.dumps(doc)))
    for path in (plain, get_role, encoded):
        assert runner.load_trust_policy(path) == doc


def test_bad_trust_policy_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(runner.BadRequest, match="nope.json: cannot read"):
        runner.load_trust_policy(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"Version": "2012-10-17"}')
    with pytest.raises(runner.BadRequest, match="broken.json: not an IAM trust policy"):
        runner.load_trust_policy(broken)


# --- report, redaction, CLI and HTTP -----------------------------------------------------------
def test_redact_catches_tokens_keys_and_sas():
    jwt = recorded.fake_jwt()
    text = f"t={jwt} k=ASIAIOSFODNN7EXAMPLE url=https://a.blob.core.windows.net/c/b?sv=2024&sig=abc%2Bdef&se=1"
    cleaned = runner.redact({"a": [text]})["a"][0]
    assert jwt not in cleaned
    assert "ASIAIOSFODNN7EXAMPLE" not in cleaned
    assert "abc%2Bdef" not in cleaned
    assert cleaned.count("[redacted]") == 3


def test_report_json_is_stable(monkeypatch):
    report = runner.run(env={"AZURE_CLIENT_ID": "not-a-guid"})  # everything after settings skips
    doc = report.as_json()
    assert doc["schema"] == "crosscloud.doctor/1"
    assert doc["ok"] is False
    assert [c["name"] for c in doc["checks"]] == [name for name, _, _ in runner.CHECKS]
    assert doc["summary"] == {"pass": 0, "warn": 0, "fail": 1, "skip": 10}
    for check in doc["checks"]:
        assert set(check) == {"name", "title", "status", "detail", "fix", "data", "duration_ms"}
    text = runner.render_text(report)
    assert text.splitlines()[1].startswith("  FAIL  settings")
    assert text.rstrip().endswith("0 passed, 0 warnings, 1 failed, 10 skipped")


def test_cli_doctor_rejects_an_unreadable_trust_policy(tmp_path, capsys):
    from crosscloud import cli

    assert cli.main(["doctor", "--trust-policy", str(tmp_path / "nope.json")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--trust-policy" in captured.err


def test_cli_doctor_json_exit_status(monkeypatch, capsys):
    from crosscloud import cli

    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_CLIENT_ID", "not-a-guid")  # no identity, so no cloud call at all
    assert cli.main(["doctor", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert doc["checks"][0]["status"] == "fail"


def test_http_diagnostics_is_503_with_the_report_when_a_check_fails(monkeypatch):
    from blueprints.diagnostics import run_diagnostics

    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_CLIENT_ID", "not-a-guid")  # no identity, so no cloud call at all
    response = run_diagnostics(func.HttpRequest("GET", "http://localhost/api/diagnostics", body=b""))
    assert response.status_code == 503
    assert response.headers["Cache-Control"] == "no-store"
    doc = json.loads(response.get_body())
    assert doc["schema"] == "crosscloud.doctor/1"
    assert doc["checks"][0]["name"] == "settings"


def test_http_diagnostics_is_registered_at_admin_level():
    import importlib

    import function_app

    app = importlib.reload(function_app).app
    functions = {f.get_function_name(): f for f in app.get_functions()}
    trigger = functions["diagnostics"].get_trigger()
    assert "admin" in str(trigger.auth_level).lower()
    assert trigger.route == "diagnostics"
