"""The local cloud is strict where Azure and AWS are strict, and lenient nowhere we rely on.

Each refusal test has a matching acceptance test, so a stack that refused everything
would fail too.
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import botocore
import jwt
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import config
from devstack.identity_server import mint_token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def issuer_key(devstack_env):
    pem = Path(devstack_env["DEVSTACK_ISSUER_KEY"]).read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def _list_container(env, token: str) -> requests.Response:
    return requests.get(
        f"{env['AZURE_STORAGE_CONTAINER_URL']}?restype=container&comp=list",
        headers={"Authorization": f"Bearer {token}", "x-ms-version": "2023-11-03"},
        verify=env["REQUESTS_CA_BUNDLE"], timeout=10)


def _sts(env):
    return boto3.client("sts", endpoint_url=env["AWS_ENDPOINT_URL_STS"], region_name=env["AWS_REGION"],
                        config=Config(signature_version=botocore.UNSIGNED))


def _assume(env, token: str, role: str | None = None):
    return _sts(env).assume_role_with_web_identity(
        RoleArn=role or env["AWS_ROLE_ARN"], RoleSessionName="devstack-test", WebIdentityToken=token)


def _code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


# --- the identity endpoint -------------------------------------------------------------------

def test_identity_endpoint_requires_the_identity_header(devstack_env):
    url = devstack_env["IDENTITY_ENDPOINT"]
    params = {"resource": config.STORAGE_RESOURCE, "api-version": "2019-08-01"}
    assert requests.get(url, params=params, timeout=5).status_code == 401
    ok = requests.get(url, params=params, headers={"X-IDENTITY-HEADER": devstack_env["IDENTITY_HEADER"]},
                      timeout=5)
    assert ok.status_code == 200


def test_identities_have_distinct_principals(devstack_env):
    def claims(client_id: str | None) -> dict:
        params = {"resource": config.AUDIENCE, "api-version": "2019-08-01"}
        if client_id:
            params["client_id"] = client_id
        body = requests.get(devstack_env["IDENTITY_ENDPOINT"], params=params,
                            headers={"X-IDENTITY-HEADER": devstack_env["IDENTITY_HEADER"]}, timeout=5).json()
        return jwt.decode(body["access_token"], options={"verify_signature": False})

    system, app, other = claims(None), claims(devstack_env["AZURE_CLIENT_ID"]), \
        claims(devstack_env["DEVSTACK_OTHER_CLIENT_ID"])
    assert len({system["sub"], app["sub"], other["sub"]}) == 3
    assert app["sub"] == app["oid"]
    assert app["appid"] == devstack_env["AZURE_CLIENT_ID"]
    assert app["iss"] == f"https://sts.windows.net/{devstack_env['DEVSTACK_TENANT_ID']}/"
    assert app["aud"] == config.AUDIENCE
    assert jwt.get_unverified_header(
        requests.get(devstack_env["IDENTITY_ENDPOINT"], params={"resource": config.AUDIENCE,
                     "api-version": "2019-08-01"}, headers={"X-IDENTITY-HEADER": devstack_env["IDENTITY_HEADER"]},
                     timeout=5).json()["access_token"])["alg"] == "RS256"


def test_identity_endpoint_refuses_unknown_client_and_resource(devstack_env):
    headers = {"X-IDENTITY-HEADER": devstack_env["IDENTITY_HEADER"]}
    unknown_client = requests.get(devstack_env["IDENTITY_ENDPOINT"], headers=headers, timeout=5, params={
        "resource": config.AUDIENCE, "api-version": "2019-08-01",
        "client_id": "00000000-0000-0000-0000-000000000000"})
    assert unknown_client.status_code == 400
    unknown_resource = requests.get(devstack_env["IDENTITY_ENDPOINT"], headers=headers, timeout=5, params={
        "resource": "api://nobody-registered-this", "api-version": "2019-08-01"})
    assert unknown_resource.status_code == 400
    assert "AADSTS500011" in unknown_resource.text


# --- Azurite checks bearer tokens -----------------------------------------------------------

def test_azurite_accepts_a_valid_storage_token(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.STORAGE_RESOURCE, ttl=600)
    assert _list_container(devstack_env, token).status_code == 200


def test_azurite_refuses_a_token_for_another_audience(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=600)
    response = _list_container(devstack_env, token)
    assert response.status_code in (401, 403)


def test_azurite_refuses_an_expired_token(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.STORAGE_RESOURCE, ttl=60,
                       now=time.time() - 3600)
    assert _list_container(devstack_env, token).status_code in (401, 403)


def test_azurite_refuses_an_anonymous_request(devstack_env):
    response = requests.get(f"{devstack_env['AZURE_STORAGE_CONTAINER_URL']}?restype=container&comp=list",
                            verify=devstack_env["REQUESTS_CA_BUNDLE"], timeout=10)
    assert response.status_code in (401, 403, 404)


# --- STS validates web identity tokens as AWS does ------------------------------------------

def test_sts_accepts_the_admitted_identity(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=600)
    response = _assume(devstack_env, token)
    assert response["SubjectFromWebIdentityToken"] == config.APP_IDENTITY.principal_id
    assert response["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_sts_refuses_a_wrong_audience(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, "api://some-other-app", ttl=600)
    with pytest.raises(ClientError) as excinfo:
        _assume(devstack_env, token)
    assert _code(excinfo) == "InvalidIdentityToken"
    assert "audience" in str(excinfo.value).lower()


def test_sts_refuses_a_foreign_signature(devstack_env):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = mint_token(forger, config.APP_IDENTITY, config.AUDIENCE, ttl=600)  # same kid, other key
    with pytest.raises(ClientError) as excinfo:
        _assume(devstack_env, token)
    assert _code(excinfo) == "InvalidIdentityToken"


def test_sts_refuses_an_expired_token(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=60, now=time.time() - 7200)
    with pytest.raises(ClientError) as excinfo:
        _assume(devstack_env, token)
    assert _code(excinfo) == "ExpiredTokenException"


def test_sts_refuses_an_unregistered_issuer(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=600,
                       issuer="https://sts.windows.net/00000000-0000-0000-0000-000000000000/")
    with pytest.raises(ClientError) as excinfo:
        _assume(devstack_env, token)
    assert _code(excinfo) == "InvalidIdentityToken"
    assert "No OpenIDConnect provider" in str(excinfo.value)


def test_sts_refuses_a_subject_the_trust_policy_does_not_admit(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.OTHER_IDENTITY, config.AUDIENCE, ttl=600)
    with pytest.raises(ClientError) as excinfo:
        _assume(devstack_env, token)
    assert _code(excinfo) == "AccessDenied"


def test_sts_refuses_a_missing_role(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=600)
    with pytest.raises(ClientError) as excinfo:
        _assume(devstack_env, token, role=f"arn:aws:iam::{config.ACCOUNT_ID}:role/does-not-exist")
    assert _code(excinfo) == "AccessDenied"


def test_sts_refuses_an_invalid_session_name(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=600)
    with pytest.raises(ClientError) as excinfo:
        _sts(devstack_env).assume_role_with_web_identity(
            RoleArn=devstack_env["AWS_ROLE_ARN"], RoleSessionName="has space", WebIdentityToken=token)
    assert _code(excinfo) == "ValidationError"


# --- S3 enforces signatures and the role's policy ---------------------------------------------

@pytest.fixture(scope="module")
def read_role_s3(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=600)
    creds = _assume(devstack_env, token)["Credentials"]
    return boto3.client("s3", endpoint_url=devstack_env["AWS_ENDPOINT_URL_S3"],
                        region_name=devstack_env["AWS_REGION"], config=Config(signature_version="s3v4"),
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def test_s3_refuses_unsigned_calls(devstack_env):
    bucket_url = f"{devstack_env['AWS_ENDPOINT_URL_S3']}/{devstack_env['S3_BUCKET']}"
    assert requests.get(f"{bucket_url}?list-type=2", timeout=5).status_code == 403
    assert requests.put(f"{bucket_url}/unsigned.txt", data=b"x", timeout=5).status_code == 403


def test_s3_refuses_a_bad_signature(devstack_env):
    wrong = boto3.client("s3", endpoint_url=devstack_env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                         aws_access_key_id=devstack_env["DEVSTACK_AWS_ADMIN_ACCESS_KEY_ID"],
                         aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as excinfo:
        wrong.list_objects_v2(Bucket=devstack_env["S3_BUCKET"])
    assert _code(excinfo) == "SignatureDoesNotMatch"


def test_read_role_may_list_and_read_but_not_write(devstack_env, read_role_s3, aws_admin, prefix):
    aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}a.txt", Body=b"a")
    listed = read_role_s3.list_objects_v2(Bucket=devstack_env["S3_BUCKET"], Prefix=prefix)
    assert [o["Key"] for o in listed["Contents"]] == [f"{prefix}a.txt"]
    assert read_role_s3.get_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}a.txt")["Body"].read() == b"a"
    with pytest.raises(ClientError) as excinfo:
        read_role_s3.put_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}b.txt", Body=b"b")
    assert _code(excinfo) == "AccessDenied"
    with pytest.raises(ClientError):
        read_role_s3.delete_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}a.txt")


def test_presigned_urls_are_verified(devstack_env, read_role_s3, aws_admin, prefix):
    key = f"{prefix}dir/pre signed ü+.txt"
    aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=key, Body=b"signed")
    url = read_role_s3.generate_presigned_url("get_object", Params={"Bucket": devstack_env["S3_BUCKET"],
                                                                    "Key": key}, ExpiresIn=60)
    assert requests.get(url, timeout=5).content == b"signed"
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(tampered, timeout=5).status_code == 403
    other_key = url.replace("pre%20signed", "pre%20signed2")
    assert requests.get(other_key, timeout=5).status_code == 403
    expired = read_role_s3.generate_presigned_url("get_object", Params={"Bucket": devstack_env["S3_BUCKET"],
                                                                        "Key": key}, ExpiresIn=1)
    time.sleep(2)
    assert requests.get(expired, timeout=5).status_code == 403


# --- Azurite's queue service: HTTPS and OAuth like the blob service -----------------------

def _peek_queue(env: dict[str, str], name: str, token: str | None) -> requests.Response:
    headers = {"x-ms-version": "2021-12-02", **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.get(f"{env['CROSSCLOUD_QUEUE__queueServiceUri']}/{name}/messages?peekonly=true",
                        headers=headers, verify=env["REQUESTS_CA_BUNDLE"], timeout=10)


def test_azurite_queues_are_provisioned_and_take_storage_tokens(devstack_env, issuer_key):
    token = mint_token(issuer_key, config.APP_IDENTITY, config.STORAGE_RESOURCE, ttl=600)
    assert devstack_env["CROSSCLOUD_QUEUE__queueServiceUri"].startswith("https://")
    for name in (config.SHARD_QUEUE, f"{config.SHARD_QUEUE}-poison"):
        assert _peek_queue(devstack_env, name, token).status_code == 200, name


def test_azurite_queues_refuse_anonymous_and_foreign_audience_requests(devstack_env, issuer_key):
    foreign = mint_token(issuer_key, config.APP_IDENTITY, config.AUDIENCE, ttl=600)
    assert _peek_queue(devstack_env, config.SHARD_QUEUE, foreign).status_code in (401, 403)
    assert _peek_queue(devstack_env, config.SHARD_QUEUE, None).status_code in (401, 403)
