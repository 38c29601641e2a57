"""The local S3 lists like AWS where the combined listing depends on it (devstack/s3_listing.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("after", ["a\uffff", "a\x01b", "a\x1f", "a😀"])
def test_s3_url_encodes_start_after_with_encoding_type_url_like_aws(env, prefix, aws_admin, after):
    """AWS: with encoding-type=url, S3 URL-encodes Delimiter, Prefix, Key and StartAfter in the
    ListObjectsV2 response (botocore asks for it and decodes them), so any legal key can be
    a start. moto echoed StartAfter raw and failed with a 500 on U+FFFF or control characters."""
    bucket = env["S3_BUCKET"]
    for key in ("a", after, after + "z", "b"):
        aws_admin.put_object(Bucket=bucket, Key=prefix + key, Body=b"x")
    response = aws_admin.list_objects_v2(Bucket=bucket, Prefix=prefix, StartAfter=prefix + after)
    assert response["StartAfter"] == prefix + after
    assert [o["Key"] for o in response["Contents"]] == [prefix + after + "z", prefix + "b"]
