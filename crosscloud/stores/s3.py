"""Amazon S3 as an `ObjectStore`, with credentials from the web-identity federation."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from crosscloud.auth.federation import client_config
from crosscloud.errors import CrossCloudError, IntegrityError, NotFound, PreconditionFailed, UpstreamError
from crosscloud.stores.base import (
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    Page,
    PutOptions,
    PutResult,
    StartRefused,
)

CHUNK = 1024 * 1024
RETRYABLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
             "ServiceUnavailable", "RequestTimeTooSkewed"}


@contextlib.contextmanager
def s3_errors(action: str, bucket: str, role_arn: str, key: str | None = None,
              role_source: str = "AWS_ROLE_ARN") -> Iterator[None]:
    """Translate botocore errors into crosscloud errors naming bucket, key, role and its setting."""
    try:
        yield
    except CrossCloudError:
        raise
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("NoSuchKey", "NotFound") or (status == 404 and key is not None and code != "NoSuchBucket"):
            raise NotFound(f"no S3 object named {key!r}") from None  # the bucket: not the caller's to know
        if code == "NoSuchBucket":
            raise UpstreamError(f"S3 bucket {bucket} does not exist (S3_BUCKET / BACKUP_S3_BUCKET)",
                                code="s3_no_such_bucket") from None
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            raise PreconditionFailed(f"S3 {action} of {key!r} in {bucket}: the object exists or changed "
                                     f"meanwhile ({code or status})") from None
        if code in ("AccessDenied", "Forbidden") or status == 403:
            raise UpstreamError(f"S3 refused {action} on {bucket}{'/' + key if key else ''}: the "
                                f"role {role_arn} ({role_source}) is not allowed to", code="s3_forbidden") from None
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
    supports_conditional_put = True

    def __init__(self, session: boto3.Session, bucket: str, *, role_arn: str, role_source: str = "AWS_ROLE_ARN",
                 config: Config | None = None):
        """`config`: timeouts and retries (the factory's budget); `role_source` names the
        setting the role came from, for refusals."""
        self.bucket = bucket
        self.role_arn = role_arn
        self.role_source = role_source
        self.client = session.client("s3", config=config or client_config())
        # key -> expected per-part SHA-256s of an upload in flight (see `_check_parts`)
        self._part_checks: dict[str, Callable[[], list[str]]] = {}
        self.client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload",
                                         self._check_parts)

    def describe(self) -> str:
        return f"S3 bucket {self.bucket} (role {self.role_arn})"

    def _errors(self, action: str, key: str | None = None) -> contextlib.AbstractContextManager[None]:
        return s3_errors(action, self.bucket, self.role_arn, key, self.role_source)

    def list_pages(self, prefix: str = "", page_size: int | None = None,
                   start_after: str | None = None) -> Iterator[Page]:
        """Listing pages from botocore's paginator; `StartAfter` resumes exactly (exclusive).

        Asks for nothing beyond the keys' own properties (no owner, no optional attributes).
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                  "PaginationConfig": {"PageSize": min(page_size or 1000, 1000)}}
        if start_after:
            params["StartAfter"] = start_after
        pages = iter(self.client.get_paginator("list_objects_v2").paginate(**params))
        first = True
        while True:
            with self._errors("list"):
                try:
                    page = next(pages, None)
                except ClientError as exc:
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if first and start_after and status == 400:
                        raise StartRefused(f"S3 refused to list from {start_after[:80]!r} "
                                           f"({exc.response.get('Error', {}).get('Code')})") from None
                    raise
            if page is None:
                return
            first = False
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
        if size < options.multipart_threshold:
            return self._put_single(key, stream, size, extra, options)
        if options.if_none_match or options.if_match:
            raise ValueError("conditional puts are single-request only (below multipart_threshold)")
        # s3transfer reads a non-seekable stream part by part; at most `concurrency` parts
        # wait in memory (its default is 10), so memory stays ~ (concurrency + 1) * part_size.
        config = TransferConfig(multipart_threshold=options.multipart_threshold,
                                multipart_chunksize=options.part_size,
                                max_concurrency=options.concurrency, use_threads=options.concurrency > 1)
        config.max_in_memory_upload_chunks = max(1, options.concurrency)  # s3transfer's, not in boto3's init
        if options.part_sha256 is not None:
            self._part_checks[key] = options.part_sha256
        try:
            with self._errors("write", key):
                self.client.upload_fileobj(stream, self.bucket, key, ExtraArgs=extra, Config=config)
                head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        finally:
            self._part_checks.pop(key, None)
        return PutResult(_etag(head.get("ETag", "")), head.get("ChecksumSHA256"))

    def _put_single(self, key: str, stream: BinaryIO, size: int, extra: dict[str, Any],
                    options: PutOptions) -> PutResult:
        """One PutObject (what s3transfer does below the threshold), without the HEAD after it."""
        if options.lean and self.fast_putter is not None:
            return self.fast_putter.put(key, stream, size, options)  # fast_s3.py: the same request, lean
        body = stream.read()  # to the end, so a verifying stream sees its EOF
        if len(body) != size:
            raise IntegrityError(f"read {len(body)} bytes for {key!r}, expected {size}")
        if options.part_sha256 is not None:
            # S3 recomputes it from the body and refuses the PUT on a mismatch (BadDigest).
            extra["ChecksumSHA256"] = options.part_sha256()[0]
            del extra["ChecksumAlgorithm"]
        if options.if_none_match:
            extra["IfNoneMatch"] = "*"
        if options.if_match:
            extra["IfMatch"] = f'"{options.if_match}"'
        with self._errors("write", key):
            response = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        return PutResult(_etag(response.get("ETag", "")), response.get("ChecksumSHA256"))

    def _check_parts(self, params: dict[str, Any], **_: Any) -> None:
        """Before CompleteMultipartUpload: each part's SHA-256 as S3 got it must equal the
        caller's digest of the bytes it read, else the upload is aborted, never made visible."""
        expected = self._part_checks.get(params.get("Key", ""))
        if expected is None:
            return
        parts = sorted(params.get("MultipartUpload", {}).get("Parts", []), key=lambda p: p["PartNumber"])
        reported = [p.get("ChecksumSHA256") for p in parts]
        ours = expected()
        if reported != ours:
            bad = next((i + 1 for i, (a, b) in enumerate(zip(reported, ours, strict=False)) if a != b),
                       min(len(reported), len(ours)) + 1)
            raise IntegrityError(f"part {bad} of {params.get('Key')!r} differs from the bytes read "
                                 f"({len(reported)} parts uploaded, {len(ours)} read); upload aborted")

    def cleanup(self, prefix: str) -> int:
        """Abort incomplete multipart uploads under `prefix` (left by a killed run)."""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        with self._errors("list incomplete uploads"):
            pages = list(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        for page in pages:
            for upload in page.get("Uploads", []):
                with contextlib.suppress(NotFound), self._errors("abort incomplete upload", upload["Key"]):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def link(self, key: str, ttl_seconds: int, *, known_to_exist: bool = False) -> str:
        if not known_to_exist:
            self.stat(key)  # 404 for a missing object rather than a link that fails later
        with self._errors("presign", key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_seconds)
