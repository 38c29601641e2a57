"""The SDK internals crosscloud relies on, checked by name: an SDK release that moves or
changes one fails here, loudly, naming it (instead of a listing that 500s in production).

The fast Azure listing path (crosscloud/stores/azure.py) drives azure-storage-blob's generated
client the way `ContainerClient.list_blob_names` does; the credential_process cache subclasses
botocore's web-identity fetcher. Each check names the internal and says what we rely on; the
behaviour checks run the real store against a loopback server that answers like Blob Storage.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import xml.etree.ElementTree as ET  # noqa: N817, S405 - our own test document
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from crosscloud.errors import UpstreamError
from crosscloud.settings import ContainerUrl
from crosscloud.stores.azure import AzureBlobStore


def internal(dotted: str) -> Any:
    """`module.attr` imported by name, or a failure that names the internal that moved."""
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"SDK internal {dotted} is gone ({exc}); crosscloud/stores/azure.py's fast listing path "
                    "or the credential_process cache uses it: adapt them to this SDK version")


def params(fn: Any) -> set[str]:
    return set(inspect.signature(fn).parameters)


def test_ignore_list_blobs_deserializer_returns_nothing_for_the_listing_model():
    cls = internal("azure.storage.blob._list_blobs_helper.IgnoreListBlobsDeserializer")
    assert cls()("ListBlobsFlatSegmentResponse", None) is None, \
        "IgnoreListBlobsDeserializer no longer skips ListBlobsFlatSegmentResponse: the fast path would parse models"


def test_return_raw_deserialized_hands_back_location_mode_and_the_parsed_body():
    fn = internal("azure.storage.blob._shared.response_handlers.return_raw_deserialized")
    decode = internal("azure.core.pipeline.policies.ContentDecodePolicy")

    class Http:
        location_mode = "primary"

    class Response:
        http_response = Http()
        context = {decode.CONTEXT_NAME: "parsed"}

    assert fn(Response(), None, {}) == ("primary", "parsed"), \
        "return_raw_deserialized(response, *_) no longer returns (location_mode, deserialized body)"


def test_process_storage_error_raises_the_mapped_error():
    fn = internal("azure.storage.blob._shared.response_handlers.process_storage_error")
    assert len(params(fn)) == 1, "process_storage_error(storage_error) changed its signature"


def test_generated_list_blob_flat_segment_takes_what_we_pass():
    container_client = internal("azure.storage.blob.ContainerClient")
    build = getattr(container_client, "_build_generated_client", None)
    assert build is not None, "ContainerClient._build_generated_client is gone"
    ops = internal("azure.storage.blob._generated.operations.ContainerOperations")
    wanted = {"prefix", "marker", "maxresults", "include", "start_from"}
    missing = wanted - params(ops.list_blob_flat_segment)
    assert not missing, f"ContainerOperations.list_blob_flat_segment lacks {sorted(missing)} (start_from: 12.28+)"
    client = container_client("https://acct.blob.core.windows.net", "data")._build_generated_client()
    assert hasattr(client.container, "_deserialize"), "generated ContainerOperations._deserialize is gone"


def test_botocore_fetcher_internals_the_cache_key_overrides():
    fetcher = internal("botocore.credentials.AssumeRoleWithWebIdentityCredentialFetcher")
    assert callable(getattr(fetcher, "_create_cache_key", None)), \
        "AssumeRoleWithWebIdentityCredentialFetcher._create_cache_key is gone (credential_process overrides it)"
    instance = fetcher(client_creator=None, web_identity_token_loader=lambda: "t",
                       role_arn="arn:aws:iam::123456789012:role/r", extra_args={"RoleSessionName": "s"})
    assert instance._assume_kwargs == {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "s"}, \
        "AssumeRoleWithWebIdentityCredentialFetcher._assume_kwargs changed (credential_process hashes it)"


# --- behaviour: the real store, a loopback server answering like Blob Storage --------------------

def listing(names: list[str], next_marker: str | None) -> bytes:
    root = ET.Element("EnumerationResults")
    blobs = ET.SubElement(root, "Blobs")
    for name in names:
        blob = ET.SubElement(blobs, "Blob")
        ET.SubElement(blob, "Name").text = name
        props = ET.SubElement(blob, "Properties")
        ET.SubElement(props, "Last-Modified").text = "Wed, 01 Jan 2025 00:00:00 GMT"
        ET.SubElement(props, "Etag").text = "0x8D"
        ET.SubElement(props, "Content-Length").text = "3"
    ET.SubElement(root, "NextMarker").text = next_marker or ""
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root)


@pytest.fixture
def blob_service() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    seen: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = parse_qs(urlsplit(self.path).query)
            seen.append(query)
            if "/missing" in self.path:
                body = b'<?xml version="1.0"?><Error><Code>ContainerNotFound</Code><Message>no</Message></Error>'
                self.send_response(404)
                self.send_header("x-ms-error-code", "ContainerNotFound")
            elif "marker" in query:
                body = listing(["c"], None)
                self.send_response(200)
            else:
                body = listing(["a", "b"], "m2")
                self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/acct", seen
    finally:
        server.shutdown()
        server.server_close()


def store(account_url: str, container: str) -> AzureBlobStore:
    # Anonymous (no credential): bearer tokens are refused over plain HTTP, and this checks the SDK, not auth.
    return AzureBlobStore(ContainerUrl(f"{account_url}/{container}", account_url, container), None,  # type: ignore[arg-type]
                          who="test", timeout=5, retries=0, quick_retry=True)


def test_fast_listing_pages_parse_and_resume_with_start_from(blob_service):
    account_url, seen = blob_service
    pages = list(store(account_url, "data").list_pages(prefix="p/", start_after="a0"))
    assert [[i.key for i in p.items] for p in pages] == [["a", "b"], ["c"]]
    assert pages[0].next_token == "m2"
    assert seen[0]["startFrom"] == ["a0"], "start_from is not sent as startFrom: azure-storage-blob < 12.28?"
    assert seen[0]["prefix"] == ["p/"]
    assert "startFrom" not in seen[1]
    assert seen[1]["marker"] == ["m2"]


def test_fast_listing_errors_go_through_process_storage_error(blob_service):
    account_url, _ = blob_service
    with pytest.raises(UpstreamError) as caught:
        list(store(account_url, "missing").list_pages())
    assert caught.value.code == "azure_container_not_found", \
        "process_storage_error no longer maps x-ms-error-code to ResourceNotFoundError(error_code=ContainerNotFound)"
