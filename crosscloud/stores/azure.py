"""Azure Blob Storage as an `ObjectStore`, authenticated with the managed identity."""

from __future__ import annotations

import datetime as dt
import threading
import xml.etree.ElementTree as ET  # noqa: N817, S405 - parses the service's own response
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import unquote

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.storage.blob import (
    BlobClient,
    BlobProperties,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    ExponentialRetry,
    LinearRetry,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob._list_blobs_helper import IgnoreListBlobsDeserializer
from azure.storage.blob._shared.response_handlers import process_storage_error, return_raw_deserialized

from crosscloud.errors import BadRequest, PreconditionFailed
from crosscloud.settings import ContainerUrl
from crosscloud.stores.azure_errors import azure_errors
from crosscloud.stores.base import (
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    Page,
    PutOptions,
    PutResult,
    ReadPastEnd,
    StartRefused,
    utf16_order,
)

CHUNK = 4 * 1024 * 1024  # download granularity: bounds memory per open stream
BLOCK = 8 * 1024 * 1024  # upload: one Put Blob up to this size, blocks of this size above it
RETRY = {"initial_backoff": 1, "increment_base": 2, "retry_total": 3}  # storage's default starts at 15 s

def check_blob_name(key: str) -> str:
    """Refuse a key that Azure would resolve to another blob (or another container).

    Blob names travel in the URL path, and every layer on the way treats that path as a
    path: `requests`/urllib3 remove `.`/`..` segments before sending (RFC 3986), and the
    service itself removes them, also percent-encoded, converts `\\` to `/` and trims a
    trailing dot from a segment ("No path segments should end with a dot", Naming and
    Referencing Containers, Blobs, and Metadata). Such a name cannot be created on Azure and
    reading it would return a different blob, so it is refused (400) before any request.
    """
    if "\\" in key:
        raise BadRequest(f"object key {key[:200]!r} cannot name an Azure blob: Azure Storage reads "
                         "a backslash as '/', so it would name another blob", code="invalid_key")
    for segment in key.split("/"):
        if segment.endswith("."):
            why = "a '.' or '..' segment is resolved as a relative path" if segment in (".", "..") \
                else "Azure Storage trims a dot at the end of a path segment"
            raise BadRequest(f"object key {key[:200]!r} cannot name an Azure blob: its path segment "
                             f"{segment[:40]!r} ends with a dot, and {why}, so it would name another "
                             "blob (Azure blob naming rules)", code="invalid_key")
    return key


def _info(props: BlobProperties) -> ObjectInfo:
    settings = props.content_settings
    md5 = settings.content_md5 if settings is not None else None
    return ObjectInfo(
        key=props.name,
        size=int(props.size or 0),
        last_modified=props.last_modified.astimezone(dt.UTC),
        etag=str(props.etag).strip('"'),
        content_type=settings.content_type if settings is not None else None,
        content_md5=bytes(md5) if md5 else None,
        metadata=dict(props.metadata) if props.metadata is not None else None,
    )


def _info_from_xml(blob: ET.Element) -> ObjectInfo:
    """One `<Blob>` of a List Blobs response (names may be percent-encoded: `Encoded="true"`).

    Only what a listing returns is read: name, size, last-modified, ETag.
    """
    name_node = blob.find("Name")
    name = name_node.text or "" if name_node is not None else ""
    if name_node is not None and name_node.get("Encoded") == "true":
        name = unquote(name)
    props = blob.find("Properties")
    get = props.findtext if props is not None else (lambda _tag, default=None: default)
    return ObjectInfo(
        key=name,
        size=int(get("Content-Length") or 0),
        last_modified=parsedate_to_datetime(get("Last-Modified") or "").astimezone(dt.UTC),
        etag=(get("Etag") or "").strip('"'),
    )


class AzureBlobStore(ObjectStore):
    name = "azure"
    max_page_size = 5000
    supports_conditional_put = True
    reads_ahead_on_open = True  # download_blob GETs the first max_single_get_size bytes at once

    def __init__(self, container: ContainerUrl, credential: TokenCredential, *, who: str,
                 timeout: float = 30, chunk_size: int = CHUNK, block_size: int = BLOCK,
                 connect_timeout: float | None = None, retries: int = 3, quick_retry: bool = False,
                 transport: HttpTransport | None = None, session: Any = None):
        """`chunk_size`: bytes per ranged GET while streaming (bulk copies amortise the
        per-request latency over larger ranges, at that much memory per open stream);
        `block_size`: single-Put-Blob threshold and block size of uploads.
        `timeout`/`connect_timeout` are per attempt; `quick_retry` waits 1 +- 0.5 s between
        attempts (an HTTP caller's deadline) instead of exponential backoff (bulk copies)."""
        self._location = container
        self._who = who
        # Storage's default backoff starts at 15 s (+-3 s jitter); callers need bounded waits.
        retry = LinearRetry(backoff=1, random_jitter_range=0.5, retry_total=retries) if quick_retry \
            else ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries)
        self._service = BlobServiceClient(
            container.account_url, credential=credential,
            connection_timeout=min(timeout, 10) if connect_timeout is None else connect_timeout,
            read_timeout=timeout, max_single_get_size=chunk_size, max_chunk_get_size=chunk_size,
            max_single_put_size=block_size, max_block_size=block_size, retry_policy=retry,
            **({"transport": transport} if transport is not None else {}),
            **({"session": session, "session_owner": False} if session is not None and transport is None else {}),
        )
        self._container: ContainerClient = self._service.get_container_client(container.container)
        self._lister = self._container._build_generated_client()  # noqa: SLF001 - see list_pages
        self._lister.container._deserialize = IgnoreListBlobsDeserializer()  # noqa: SLF001
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_lock = threading.Lock()

    def describe(self) -> str:
        return f"Azure container {self._location.url}"

    listing_order = "utf-16"

    def sort_key(self, key: str) -> bytes:
        return utf16_order(key)  # Azure (and Azurite) list names by UTF-16 code units

    def list_pages(self, prefix: str = "", page_size: int | None = None,
                   start_after: str | None = None) -> Iterator[Page]:
        """Listing pages, parsed straight from the service's XML.

        This is the SDK's own fast path, as `list_blob_names` takes it: a generated client on
        the same pipeline (auth, retries) whose model deserializer is switched off, with
        `cls=return_raw_deserialized` handing back the parsed XML, read here for the
        properties we need. `list_blobs`' model deserializer costs ~0.35 ms of CPU per
        blob, 10x the request itself; see docs/benchmarks.md. No `include`: blob metadata
        is not asked for (no listing caller uses it). `start_after` resumes with the
        service's `startFrom`, which is inclusive, so the first page asks for one more and
        drops that name.
        """
        size = min(page_size or self.max_page_size, self.max_page_size)
        marker = None
        extra: dict[str, Any] = {}
        if start_after:
            extra = {"start_from": start_after, "maxresults": min(size + 1, self.max_page_size)}
        while True:
            with azure_errors("list", self._who):
                try:
                    _, xml = self._lister.container.list_blob_flat_segment(
                        prefix=prefix or None, marker=marker, **{"maxresults": size, **extra},
                        cls=return_raw_deserialized)
                except HttpResponseError as error:
                    if extra and error.status_code == 400:
                        code = error.response.headers.get("x-ms-error-code") if error.response else None
                        raise StartRefused(f"Azure refused to list from {start_after[:80]!r} ({code})") from None
                    process_storage_error(error)  # the SDK's own mapping: error codes, exception types
            blobs = xml.find("Blobs")
            items = [_info_from_xml(blob) for blob in (blobs if blobs is not None else [])]
            if extra and items and items[0].key == start_after:
                items = items[1:]
            marker = xml.findtext("NextMarker") or None
            yield Page(items, marker)
            if marker is None:
                return
            extra = {}

    def _blob(self, key: str) -> BlobClient:
        """The client of one blob; every per-blob call goes through here (see check_blob_name)."""
        return self._container.get_blob_client(check_blob_name(key))

    def stat(self, key: str) -> ObjectInfo:
        blob = self._blob(key)
        with azure_errors("stat", self._who, key):
            return _info(blob.get_blob_properties())

    def open(self, key: str) -> ObjectReader:
        blob = self._blob(key)
        with azure_errors("read", self._who, key):
            downloader = blob.download_blob(max_concurrency=1)
        info = _info(downloader.properties)

        def chunks() -> Iterator[bytes]:
            with azure_errors("read", self._who, key):
                yield from downloader.chunks()

        return ObjectReader(info, chunks())

    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        """One Put Blob up to the block size, else blocks committed by one Put Block List (never a
        partial blob); the stream is read one past `size` before the commit (a verifying stream
        can still refuse it). Conditions apply to the commit; a lost race: `PreconditionFailed`."""
        conditions: dict[str, Any] = {"etag": f'"{options.if_match}"', "match_condition":
                                      MatchConditions.IfNotModified} if options.if_match else {}
        md5 = bytearray(options.content_md5) if options.content_md5 else None
        blob = self._blob(key)
        with azure_errors("write", self._who, key):
            try:
                result = blob.upload_blob(
                    ReadPastEnd(stream, size, key), length=size, overwrite=not options.if_none_match,
                    metadata=options.metadata or None, max_concurrency=options.concurrency,
                    content_settings=ContentSettings(content_type=options.content_type, content_md5=md5),
                    **conditions)
            except (ResourceExistsError, ResourceModifiedError) as exc:
                raise PreconditionFailed(f"Azure write of {key!r}: the blob exists or changed meanwhile "
                                         f"({getattr(exc, 'error_code', None)})") from None
        return PutResult(str(result["etag"]).strip('"'), None)

    def _user_delegation_key(self) -> UserDelegationKey:
        """Reused until 10 minutes before it ends (a key may live up to 7 days)."""
        now = dt.datetime.now(dt.UTC)
        with self._delegation_lock:
            key = self._delegation_key
            if key is None or dt.datetime.fromisoformat(
                    str(key.signed_expiry).replace("Z", "+00:00")) < now + dt.timedelta(minutes=10):
                with azure_errors("get user delegation key", self._who):
                    key = self._service.get_user_delegation_key(
                        key_start_time=now - dt.timedelta(minutes=5),
                        key_expiry_time=now + dt.timedelta(hours=1))
                self._delegation_key = key
            return key

    def link(self, key: str, ttl_seconds: int, *, known_to_exist: bool = False) -> str:
        blob = self._blob(key)
        if not known_to_exist:
            self.stat(key)  # 404 for a missing blob rather than a link that fails later
        now = dt.datetime.now(dt.UTC)
        sas = generate_blob_sas(
            account_name=self._service.account_name, container_name=self._location.container,
            blob_name=key, user_delegation_key=self._user_delegation_key(),
            permission=BlobSasPermissions(read=True), start=now - dt.timedelta(minutes=1),
            expiry=now + dt.timedelta(seconds=ttl_seconds), protocol="https",
        )
        return f"{blob.url}?{sas}"

