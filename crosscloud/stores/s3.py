"""Amazon S3 as an `ObjectStore`, with credentials from the web-identity federation."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from crosscloud.errors import CrossCloudError, NotFound, UpstreamError
from crosscloud.federation import client_config
from crosscloud.stores.base import ObjectInfo, ObjectReader, ObjectStore, Page, PutOptions, PutResult

CHUNK = 1024 * 1024
RETRYABLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
             "ServiceUnavailable", "RequestTimeTooSkewed"}


@contextlib.contextmanager
def s3_errors(action: str, bucket: str, role_arn: str, key: str | None = None) -> Iterator[None]:
    """Translate botocore errors into crosscloud errors naming bucket, key and role."""
    try:
        yield
    except CrossCloudError:
        raise
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("NoSuchKey", "NotFound") or (status == 404 and key is not None and code != "NoSuchBucket"):
            raise NotFound(f"no S3 object named {key!r} in bucket {bucket}") from None
        if code == "NoSuchBucket":
            raise UpstreamError(f"S3 bucket {bucket} does not exist (S3_BUCKET / BACKUP_S3_BUCKET)",
                                code="s3_no_such_bucket") from None
        if code in ("AccessDenied", "Forbidden") or status == 403:
            raise UpstreamError(f"S3 refused {action} on {bucket}{'/' + key if key else ''}: the "
                                f"role {role_arn} is not allowed to", code="s3_forbidden") from None
        retry = code in RETRYABLE or status >= 500
        raise UpstreamError(f"S3 {action} failed: {code or status}", code="s3_error",
                            status=503 if retry else 502, retry_after=5 if retry else None) from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise UpstreamError(f"S3 did not answer {action} in time ({type(exc).__name__})",
                            code="s3_unavailable", status=503, retry_after=5) from None
    except BotoCoreError as exc:
        raise UpstreamError(f"S3 {action} failed: {type(exc).__name__}", code="s3_error",
                            status=503, retry_after=5) from None


def _etag(value: str) -> str:
    return value.strip('"')


class S3Store(ObjectStore):
    name = "s3"
    max_page_size = 1000

    def __init__(self, session: boto3.Session, bucket: str, *, role_arn: str, timeout: float = 30):
        self.bucket = bucket
        self.role_arn = role_arn
        self.client = session.client("s3", config=client_config(timeout=timeout))

    def describe(self) -> str:
        return f"S3 bucket {self.bucket} (role {self.role_arn})"

    def _errors(self, action: str, key: str | None = None) -> contextlib.AbstractContextManager[None]:
        return s3_errors(action, self.bucket, self.role_arn, key)

    def list_pages(self, prefix: str = "", page_token: str | None = None,
                   page_size: int | None = None) -> Iterator[Page]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                  "PaginationConfig": {"PageSize": min(page_size or 1000, 1000)}}
        if page_token:
            params["ContinuationToken"] = page_token
        pages = iter(self.client.get_paginator("list_objects_v2").paginate(**params))
        while True:
            with self._errors("list"):
                page = next(pages, None)
            if page is None:
                return
            items = [
                ObjectInfo(key=o["Key"], size=int(o["Size"]),
                           last_modified=o["LastModified"].astimezone(dt.UTC),
                           etag=_etag(o.get("ETag", "")))
                for o in page.get("Contents", [])
            ]
            yield Page(items, page.get("NextContinuationToken"))

    def _info(self, key: str, head: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key, size=int(head["ContentLength"]),
            last_modified=head["LastModified"].astimezone(dt.UTC),
            etag=_etag(head.get("ETag", "")), content_type=head.get("ContentType"),
            metadata=dict(head.get("Metadata") or {}),
        )

    def stat(self, key: str) -> ObjectInfo:
        with self._errors("stat", key):
            return self._info(key, self.client.head_object(Bucket=self.bucket, Key=key))

    def head_checksum(self, key: str) -> dict[str, Any]:
        """HEAD with the additional checksum (used to verify a copy end to end)."""
        with self._errors("stat", key):
            return self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")

    def open(self, key: str) -> ObjectReader:
        with self._errors("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            with self._errors("read", key):
                yield from body.iter_chunks(CHUNK)

        return ObjectReader(self._info(key, response), chunks(), body.close)

    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        extra: dict[str, Any] = {"Metadata": options.metadata, "ChecksumAlgorithm": "SHA256"}
        if options.content_type:
            extra["ContentType"] = options.content_type
        config = TransferConfig(multipart_threshold=options.multipart_threshold,
                                multipart_chunksize=options.part_size,
                                max_concurrency=options.concurrency, use_threads=options.concurrency > 1)
        with self._errors("write", key):
            self.client.upload_fileobj(stream, self.bucket, key, ExtraArgs=extra, Config=config)
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        return PutResult(_etag(head.get("ETag", "")), head.get("ChecksumSHA256"))

    def link(self, key: str, ttl_seconds: int) -> str:
        self.stat(key)  # 404 for a missing object rather than a link that fails later
        with self._errors("presign", key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_seconds)
