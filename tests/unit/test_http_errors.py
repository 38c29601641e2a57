"""The error boundary: function-level bodies say nothing about the deployment, admin bodies do."""

import json

import azure.functions as func
import pytest

from blueprints.http import handle_errors, handle_public_errors
from crosscloud.errors import (
    BadRequest,
    CrossCloudError,
    FederationError,
    IdentityError,
    IntegrityError,
    NotFound,
    SettingError,
    UpstreamError,
)

ARN = "arn:aws:iam::123456789012:role/crosscloud-read"
CLIENT = "c1a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b"
DEPLOYMENT_ERRORS = [
    FederationError(f"AWS STS refused AssumeRoleWithWebIdentity (AccessDenied): not allowed to assume {ARN}",
                    code="sts_accessDenied"),
    UpstreamError(f"S3 refused read on crosscloud-data/k: the role {ARN} is not allowed to", code="s3_forbidden"),
    UpstreamError("S3 bucket crosscloud-data does not exist (S3_BUCKET / BACKUP_S3_BUCKET)", code="s3_no_such_bucket"),
    UpstreamError(f"Azure read refused: assign 'Storage Blob Data Reader' on container data to "
                  f"user-assigned identity {CLIENT}", code="azure_forbidden"),
    IdentityError(f"user-assigned identity {CLIENT} could not get a token for api://tenant/crosscloud"),
    SettingError(f"app setting AWS_ROLE_ARN is malformed: expected something like {ARN}"),
    IntegrityError("part 2 of 'k' differs"),
    UpstreamError(f"something new naming {ARN}", code="new_code"),
]


def call(decorator, exc: CrossCloudError) -> tuple[int, dict]:
    def fn(req: func.HttpRequest) -> func.HttpResponse:
        raise exc

    response = decorator(fn)(func.HttpRequest("GET", "http://localhost/api/objects?code=k", body=b""))
    return response.status_code, json.loads(response.get_body())["error"]


@pytest.mark.parametrize("exc", DEPLOYMENT_ERRORS, ids=lambda e: e.code)
def test_function_level_bodies_name_nothing_of_the_deployment(exc, caplog):
    status, error = call(handle_public_errors, exc)
    assert status == exc.status
    assert error["code"] == exc.code
    for secret in ("123456789012", "crosscloud-read", "crosscloud-data", CLIENT, "arn:aws", "container data",
                   "api://"):
        assert secret not in error["message"]
    assert "/api/diagnostics" in error["message"]
    assert exc.message in caplog.text  # the detail is in the log


@pytest.mark.parametrize("exc", DEPLOYMENT_ERRORS, ids=lambda e: e.code)
def test_admin_bodies_keep_the_detail(exc):
    assert call(handle_errors, exc)[1]["message"] == exc.message


@pytest.mark.parametrize("exc", [BadRequest("limit must be from 1 to 5000, got 0", code="invalid_limit"),
                                 NotFound("no S3 object named 'a/b'")])
def test_the_callers_own_input_errors_stay_as_they_are(exc):
    assert call(handle_public_errors, exc) == (exc.status, {"code": exc.code, "message": exc.message})
