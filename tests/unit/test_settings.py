"""Settings fail the call that needs them, naming the setting; nothing fails at import."""

import pytest

from crosscloud.errors import SettingError
from crosscloud.settings import Settings

GOOD = {
    "AZURE_STORAGE_CONTAINER_URL": "https://acct.blob.core.windows.net/data",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/crosscloud-read",
    "AWS_WEB_IDENTITY_AUDIENCE": "api://11111111-2222-3333-4444-555555555555/crosscloud",
    "AWS_REGION": "eu-west-1",
    "S3_BUCKET": "my-bucket",
}


def test_good_settings():
    s = Settings(GOOD)
    assert s.container_url.account_url == "https://acct.blob.core.windows.net"
    assert s.container_url.container == "data"
    assert s.azure_client_id is None
    assert s.backup_bucket == "my-bucket"
    assert s.backup_prefix == "backup/"
    assert s.aws_backup_role_arn == GOOD["AWS_ROLE_ARN"]


def test_azurite_style_container_url():
    s = Settings({"AZURE_STORAGE_CONTAINER_URL": "https://127.0.0.1:10000/devstoreaccount1/data"})
    assert s.container_url.account_url == "https://127.0.0.1:10000/devstoreaccount1"
    assert s.container_url.container == "data"


@pytest.mark.parametrize(("name", "value"), [
    ("AZURE_STORAGE_CONTAINER_URL", "http://acct.blob.core.windows.net/data"),
    ("AZURE_STORAGE_CONTAINER_URL", "https://acct.blob.core.windows.net/"),
    ("AZURE_STORAGE_CONTAINER_URL", "https://acct.blob.core.windows.net/data?sv=2024&sig=abc"),
    ("AWS_ROLE_ARN", "crosscloud-read"),
    ("AWS_ROLE_ARN", "arn:aws:iam::12345:role/x"),
    ("AWS_REGION", "Europe"),
    ("S3_BUCKET", "Bad_Bucket"),
    ("AWS_WEB_IDENTITY_AUDIENCE", "api://x/.default"),
    ("AZURE_CLIENT_ID", "not-a-guid"),
    ("BACKUP_S3_PREFIX", "/backup"),
    ("BACKUP_S3_PREFIX", "backup"),
])
def test_malformed_setting_is_named(name, value):
    s = Settings({**GOOD, name: value})
    attr = {"AZURE_STORAGE_CONTAINER_URL": "container_url", "AWS_ROLE_ARN": "aws_role_arn",
            "AWS_REGION": "aws_region", "S3_BUCKET": "s3_bucket", "AWS_WEB_IDENTITY_AUDIENCE": "aws_audience",
            "AZURE_CLIENT_ID": "azure_client_id", "BACKUP_S3_PREFIX": "backup_prefix"}[name]
    with pytest.raises(SettingError, match=name):
        getattr(s, attr)


def test_sas_in_container_url_is_not_echoed():
    s = Settings({**GOOD, "AZURE_STORAGE_CONTAINER_URL": "https://a.blob.core.windows.net/d?sig=SECRETSIG"})
    with pytest.raises(SettingError) as excinfo:
        _ = s.container_url
    assert "SECRETSIG" not in str(excinfo.value)


@pytest.mark.parametrize("name", ["AWS_ROLE_ARN", "S3_BUCKET", "AWS_REGION", "AWS_WEB_IDENTITY_AUDIENCE",
                                  "AZURE_STORAGE_CONTAINER_URL"])
def test_missing_setting_is_named(name):
    env = {k: v for k, v in GOOD.items() if k != name}
    attr = {"AWS_ROLE_ARN": "aws_role_arn", "S3_BUCKET": "s3_bucket", "AWS_REGION": "aws_region",
            "AWS_WEB_IDENTITY_AUDIENCE": "aws_audience", "AZURE_STORAGE_CONTAINER_URL": "container_url"}[name]
    with pytest.raises(SettingError, match=f"{name} is not set"):
        getattr(Settings(env), attr)


def test_int_settings():
    assert Settings({}).download_max_bytes == 4 * 1024 * 1024
    assert Settings({"DOWNLOAD_MAX_BYTES": "0"}).download_max_bytes == 0  # always redirect
    assert Settings({"DOWNLOAD_MAX_BYTES": str(16 * 1024 * 1024)}).download_max_bytes == 16 * 1024 * 1024
    for bad in ("lots", "-1", str(16 * 1024 * 1024 + 1)):
        with pytest.raises(SettingError, match="DOWNLOAD_MAX_BYTES"):
            _ = Settings({"DOWNLOAD_MAX_BYTES": bad}).download_max_bytes
    with pytest.raises(SettingError, match="DOWNLOAD_LINK_TTL_SECONDS"):
        _ = Settings({"DOWNLOAD_LINK_TTL_SECONDS": "86400"}).link_ttl_seconds
