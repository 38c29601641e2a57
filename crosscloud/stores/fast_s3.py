"""A lean PutObject of a small body: signed by botocore's SigV4 signer, sent over urllib3.

Why: `put_object` spends a small copy's client CPU in event hooks, parameter validation,
serialisation and `Expect: 100-continue`. This builds the request PutObject would build
and borrows the rest from botocore: the bucket's endpoint from the client's own endpoint
resolution (ruleset, addressing style, region), the session's refreshable credentials
(`get_frozen_credentials` refreshes them ahead of expiry), `S3SigV4Auth`, the client's
standard-mode retry handler (same max attempts, backoff, retry quota, x-amz-retry-after),
its error parser, and the store's error mapping (`s3_errors`: the same codes). The SHA-256
of the body goes in `x-amz-checksum-sha256`, so S3 refuses a body that differs from what
was read, and the checksum it reports back is returned for the copier to compare.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, BinaryIO

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.hooks import HierarchicalEmitter
from botocore.parsers import create_parser
from botocore.retries import standard
from botocore.utils import percent_encode

from crosscloud.errors import IntegrityError
from crosscloud.stores.base import PutOptions, PutResult
from crosscloud.stores.s3 import s3_errors

SHA256_HEADER = "x-amz-checksum-sha256"


def retry_handler(client: Any) -> standard.RetryHandler:
    """botocore's standard-mode handler, built by botocore's own `register_retry_handler` (so it
    is whatever that botocore version builds) with the client's attempt limit. It registers on
    a stand-in's event emitter, not on the client, which has its own handler already."""
    stand_in = SimpleNamespace(meta=SimpleNamespace(service_model=client.meta.service_model,
                                                    events=HierarchicalEmitter()))
    return standard.register_retry_handler(stand_in, max_attempts=client.meta.config.retries["total_max_attempts"])


def bucket_endpoint(client: Any, bucket: str) -> tuple[str, str, str]:
    """(URL of the bucket, signing region, signing name) as the client resolves them for PutObject."""
    operation = client.meta.service_model.operation_model("PutObject")
    context: dict[str, Any] = {}
    url, _, _ = client._resolve_endpoint_ruleset(operation, {"Bucket": bucket, "Key": "k"}, context)  # noqa: SLF001
    signing = context.get("signing", {})
    return url.rstrip("/"), signing.get("region") or client.meta.region_name, signing.get("signing_name") or "s3"


class FastPutter:
    """Single-request PUTs into one bucket, sharing a process-wide urllib3 pool."""

    def __init__(self, client: Any, credentials: Any, bucket: str, *, role_arn: str,
                 pools: urllib3.PoolManager, sleep: Any = time.sleep):
        self._client, self._credentials, self._pools, self._sleep = client, credentials, pools, sleep
        self.bucket, self.role_arn = bucket, role_arn
        self._base, self._region, self._service = bucket_endpoint(client, bucket)
        self._operation = client.meta.service_model.operation_model("PutObject")
        self._parser = create_parser(client.meta.service_model.metadata["protocol"])
        self._retries = retry_handler(client)

    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        body = stream.read()  # to the end, so a verifying stream sees its EOF (and checks it)
        if len(body) != size:
            raise IntegrityError(f"read {len(body)} bytes for {key!r}, expected {size}")
        checksum = options.part_sha256()[0] if options.part_sha256 is not None \
            else base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        headers = {f"x-amz-meta-{k}": v for k, v in (options.metadata or {}).items()}
        # As PutObject(ChecksumAlgorithm="SHA256", ChecksumSHA256=...) sends it: S3 checks the
        # body against it, stores it and reports it back (compared by the copier).
        headers.update({SHA256_HEADER: checksum, "x-amz-sdk-checksum-algorithm": "SHA256"})
        if options.content_type:
            headers["Content-Type"] = options.content_type
        if options.if_none_match:
            headers["If-None-Match"] = "*"
        if options.if_match:
            headers["If-Match"] = f'"{options.if_match}"'
        url = f"{self._base}/{percent_encode(key, safe='/~')}"
        with s3_errors("write", self.bucket, self.role_arn, key):
            response = self._send(url, headers, body)
        return PutResult(response.get("etag", "").strip('"'), response.get(SHA256_HEADER))

    def _send(self, url: str, headers: dict[str, str], body: bytes) -> Mapping[str, str]:
        attempts, request_context = 0, {}  # type: ignore[var-annotated]
        while True:
            attempts += 1
            http, parsed, caught = None, None, None
            try:
                status, answer, data = self._attempt(url, headers, body)
                if status < 300:
                    return answer
                http = AWSResponse(url, status, answer, None)
                parsed = self._parser.parse({"headers": answer, "status_code": status, "body": data},
                                            self._operation.output_shape)
            except (ConnectionClosedError, EndpointConnectionError, ConnectTimeoutError,
                    ReadTimeoutError) as exc:
                caught = exc
            delay = self._retries.needs_retry(
                response=(http, parsed) if http is not None else None, attempts=attempts,
                operation=self._operation, caught_exception=caught, request_dict={"context": request_context})
            if delay is None:
                if caught is not None:
                    raise caught
                raise ClientError(parsed, "PutObject")  # type: ignore[arg-type]
            self._sleep(delay)

    def _attempt(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        request = AWSRequest(method="PUT", url=url, headers=dict(headers), data=body)
        request.headers["Content-Length"] = str(len(body))
        request.context.update(client_config=self._client.meta.config,
                               checksum={"request_algorithm": {"in": "header", "name": SHA256_HEADER,
                                                               "algorithm": "sha256"}})
        frozen = self._credentials.get_frozen_credentials()  # botocore refreshes ahead of expiry
        S3SigV4Auth(frozen, self._service, self._region).add_auth(request)
        try:
            response = self._pools.request("PUT", url, body=body, headers=dict(request.headers.items()),
                                           preload_content=False, redirect=False)
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError):
            raise EndpointConnectionError(endpoint_url=self._base) from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise ConnectTimeoutError(endpoint_url=self._base) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise ReadTimeoutError(endpoint_url=self._base) from None
        except urllib3.exceptions.HTTPError as exc:  # reset mid-request, protocol errors
            raise ConnectionClosedError(endpoint_url=self._base, error=type(exc).__name__) from None
        try:
            data = response.read()
        except urllib3.exceptions.ReadTimeoutError:
            raise ReadTimeoutError(endpoint_url=self._base) from None
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectionClosedError(endpoint_url=self._base, error=type(exc).__name__) from None
        finally:
            response.release_conn()
        return response.status, response.headers, data


def attach(store: Any, credentials: Any, *, timeout: float, pool: int) -> None:
    """Give an `S3Store` its lean putter: the store's client, bucket and role; the session's credentials."""
    from crosscloud.stores import transport

    tls = bucket_endpoint(store.client, store.bucket)[0].startswith("https:")
    store.fast_putter = FastPutter(store.client, credentials, store.bucket, role_arn=store.role_arn,
                                   pools=transport.pool_manager(transport.aws_ca_file(), pool, timeout, tls=tls))
