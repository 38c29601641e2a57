"""Client CPU of one Azure listing: what it asks for today against asking for blob metadata too.

Issue 11 item 6: the listing used to send `include=metadata` and parse each blob's
metadata, content type and Content-MD5, which no listing caller uses. The baseline below
is that request and that parse, reproduced on the same SDK fast path, and is run
interleaved with `AzureBlobStore.list_pages` in the same process, so only the difference
is measured. CPU is this process's (`time.process_time`): Azurite runs elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import statistics
import time
import xml.etree.ElementTree as ET  # noqa: N817, S405 - Azurite's own response
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

META_PREFIX = "bench-list-meta/"
METADATA = {"owner": "team-analytics", "pipeline": "nightly-export", "schema": "v3",
            "sourceetag": "0x8DC0123456789AB"}


def seed_with_metadata(container: Any, count: int) -> None:
    """`count` blobs under META_PREFIX, each with four metadata pairs (once)."""
    have = sum(1 for _ in container.list_blob_names(name_starts_with=META_PREFIX))
    if have >= count:
        return
    keys = [f"{META_PREFIX}{i // 100:03d}/object-{i:05d}.bin" for i in range(count)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: container.upload_blob(k, b"m" * 64, metadata=METADATA, overwrite=True), keys))


def _old_info(blob: ET.Element) -> dict[str, Any]:
    """The parse the listing did before: every property we used to read, metadata included."""
    name_node = blob.find("Name")
    name = name_node.text or "" if name_node is not None else ""
    if name_node is not None and name_node.get("Encoded") == "true":
        name = unquote(name)
    props = blob.find("Properties")
    get = props.findtext if props is not None else (lambda _tag, default=None: default)
    md5 = get("Content-MD5")
    metadata = blob.find("Metadata")
    return {"key": name, "size": int(get("Content-Length") or 0),
            "last_modified": parsedate_to_datetime(get("Last-Modified") or "").astimezone(dt.UTC),
            "etag": (get("Etag") or "").strip('"'), "content_type": get("Content-Type") or None,
            "content_md5": base64.b64decode(md5) if md5 else None,
            "metadata": {m.tag: m.text or "" for m in metadata} if metadata is not None else {}}


def _with_metadata(store: Any, prefix: str) -> int:
    from azure.storage.blob._shared.response_handlers import return_raw_deserialized

    count, marker = 0, None
    while True:
        _, xml = store._lister.container.list_blob_flat_segment(  # noqa: SLF001 - the store's own client
            prefix=prefix, marker=marker, maxresults=5000, include=["metadata"], cls=return_raw_deserialized)
        blobs = xml.find("Blobs")
        count += len([_old_info(b) for b in (blobs if blobs is not None else [])])
        marker = xml.findtext("NextMarker") or None
        if marker is None:
            return count


def _ours(store: Any, prefix: str) -> int:
    return sum(len(page.items) for page in store.list_pages(prefix, page_size=5000))


def measure(store: Any, prefixes: dict[str, str], expected: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per data set: median CPU and wall seconds of each variant, and the CPU saved."""
    results: dict[str, dict[str, float]] = {}
    for label, prefix in prefixes.items():
        _ours(store, prefix), _with_metadata(store, prefix)  # warm
        cpu: dict[str, list[float]] = {"before": [], "after": []}
        wall: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(rounds):  # interleaved: drift on a shared machine hits both alike
            for name, fn in (("before", _with_metadata), ("after", _ours)):
                started_cpu, started = time.process_time(), time.perf_counter()
                count = fn(store, prefix)
                cpu[name].append(time.process_time() - started_cpu)
                wall[name].append(time.perf_counter() - started)
                assert count == expected, (label, name, count)
        before, after = statistics.median(cpu["before"]), statistics.median(cpu["after"])
        results[label] = {"cpu_before": before, "cpu_after": after, "saved": 1 - after / before,
                          "wall_before": statistics.median(wall["before"]),
                          "wall_after": statistics.median(wall["after"])}
    return results
