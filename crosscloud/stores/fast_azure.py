"""A lean read of a whole small blob: one GET with the identity's bearer token over urllib3.

Why: for a 16 KiB blob, `download_blob` spends most of a copy's client CPU in the
generated client (deserialising ~50 response headers into models) and 12 pipeline
policies; the bytes themselves are nothing. This sends the request the SDK's first
download request would send (same API version, bearer token for the storage scope from
the app's azure-identity credential, asked on every request so its cache decides about
refresh) and keeps what the SDK path gives: its retry classification (`is_retry` of
azure-storage-blob) and `ExponentialRetry` backoff with the store's limits (plus the
service's Retry-After, which the storage policy ignores, honoured up to MAX_RETRY_AFTER_S),
the store's timeouts, and the store's error mapping (`azure_errors`: the same codes).
A blob larger than the caller's limit is not read here (None: use the SDK path).
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from collections.abc import Mapping
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import urllib3
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ExponentialRetry
from azure.storage.blob._shared.constants import STORAGE_OAUTH_SCOPE
from azure.storage.blob._shared.models import LocationMode
from azure.storage.blob._shared.policies import is_retry

from crosscloud.settings import ContainerUrl
from crosscloud.stores.azure import check_blob_name
from crosscloud.stores.azure_errors import azure_errors
from crosscloud.stores.base import ObjectInfo, ObjectReader

MAX_RETRY_AFTER_S = 20  # a service's Retry-After is honoured up to this long
META = "x-ms-meta-"


class _Response:
    """The shape `is_retry` reads: `.http_response.status_code` / `.headers`."""

    def __init__(self, status: int, headers: Mapping[str, str]):
        self.http_response = self
        self.status_code = status
        self.headers = headers


def _error(status: int, headers: Mapping[str, str]) -> HttpResponseError:
    """The azure-core exception the SDK raises for this answer (`process_storage_error`'s types)."""
    code = headers.get("x-ms-error-code")
    message = f"HTTP {status} ({code})"
    cls = ResourceNotFoundError if status == 404 else \
        ClientAuthenticationError if status in (401, 403) else HttpResponseError
    error = cls(message=message)
    error.status_code, error.error_code = status, code  # type: ignore[attr-defined]
    return error


def info_from_headers(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    md5 = headers.get("Content-MD5")
    return ObjectInfo(
        key=key, size=int(headers.get("Content-Length") or 0),
        last_modified=parsedate_to_datetime(headers["Last-Modified"]).astimezone(dt.UTC),
        etag=headers.get("ETag", "").strip('"'), content_type=headers.get("Content-Type"),
        content_md5=base64.b64decode(md5) if md5 else None,
        metadata={k[len(META):]: v for k, v in headers.items() if k.lower().startswith(META)},
    )


class FastBlobReader:
    """Whole-blob GETs of one container, sharing a process-wide urllib3 pool."""

    def __init__(self, container: ContainerUrl, credential: TokenCredential, *, who: str, api_version: str,
                 pools: urllib3.PoolManager, retry: ExponentialRetry, sleep: Any = time.sleep):
        self._base = f"{container.account_url}/{quote(container.container)}/"
        self._credential, self._who, self._pools = credential, who, pools
        self._api_version = api_version
        self._retry = retry
        self._sleep = sleep

    def open(self, key: str, limit: int) -> ObjectReader | None:
        """The blob in one GET if it is at most `limit` bytes; None if it is larger."""
        check_blob_name(key)  # as the SDK path: a dot segment would reach another blob
        with azure_errors("read", self._who, key):
            headers, body = self._get(key, limit)
        if body is None:
            return None
        return ObjectReader(info_from_headers(key, headers), iter((body,)) if body else iter(()))

    def _get(self, key: str, limit: int) -> tuple[Mapping[str, str], bytes | None]:
        url = self._base + quote(key, safe="/~")
        count = 0  # as the storage retry policy counts: retries so far
        while True:
            retry_after: float | None = None
            try:
                status, headers, body = self._attempt(url, limit)
            except (ServiceRequestError, ServiceResponseError):
                if count >= self._retry.total_retries:
                    raise
            else:
                if status == 200:
                    return headers, body
                if not is_retry(_Response(status, headers), LocationMode.PRIMARY) \
                        or count >= self._retry.total_retries:
                    raise _error(status, headers)
                retry_after = _seconds(headers.get("Retry-After"))
            count += 1
            delay = self._retry.get_backoff_time({"count": count})
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
            self._sleep(delay)

    def _attempt(self, url: str, limit: int) -> tuple[int, Mapping[str, str], bytes | None]:
        response = self._send(url)
        try:
            status, headers = response.status, response.headers
            if status == 200 and int(headers.get("Content-Length") or 0) > limit:
                response.close()  # not read: the SDK path streams it
                return status, headers, None
            return status, headers, self._read(response)  # an error body is drained too: reusable
        finally:
            response.release_conn()

    def _send(self, url: str) -> urllib3.BaseHTTPResponse:
        token = self._credential.get_token(STORAGE_OAUTH_SCOPE).token  # azure-identity's cache decides
        headers = {"Authorization": f"Bearer {token}", "x-ms-version": self._api_version,
                   "x-ms-date": formatdate(usegmt=True), "x-ms-client-request-id": str(uuid.uuid4()),
                   "User-Agent": "crosscloud-fast-read"}
        try:
            return self._pools.request("GET", url, headers=headers, preload_content=False, redirect=False)
        except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.NewConnectionError) as exc:
            raise ServiceRequestError(type(exc).__name__) from None  # never str(exc): it names the URL
        except urllib3.exceptions.HTTPError as exc:  # reset, read timeout, protocol error
            raise ServiceResponseError(type(exc).__name__) from None

    @staticmethod
    def _read(response: urllib3.BaseHTTPResponse) -> bytes:
        try:
            return response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceResponseError(type(exc).__name__) from None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: the storage service sends seconds
        return None


def attach(store: Any, container: ContainerUrl, credential: TokenCredential, *, who: str,
           timeout: float, pool: int) -> None:
    """Give an `AzureBlobStore` its lean reader, with the store's API version and retry limits."""
    from crosscloud.stores import transport
    from crosscloud.stores.azure import RETRY

    store.fast_reader = FastBlobReader(
        container, credential, who=who, api_version=store._service.api_version,  # noqa: SLF001 - our store's client
        pools=transport.pool_manager(transport.azure_ca_file(), pool, timeout), retry=ExponentialRetry(**RETRY))
