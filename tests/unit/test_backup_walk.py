"""The backup's in-step walk and its index: exactly-once lookups across UTF-8 and UTF-16 orders.

The fakes here order keys the way each service documents it, computed independently of
`walk.py`: S3 by UTF-8 bytes, Azure by UTF-16 code units (surrogate pairs spelled out).
"""

from __future__ import annotations

import io
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crosscloud.backup import index
from crosscloud.backup.walk import InOrderLookup
from crosscloud.stores.base import utf8_order, utf16_order


def azure_units(key: str) -> list[int]:
    """UTF-16 code units, surrogate pairs computed by hand (Azure's listing order)."""
    units: list[int] = []
    for ch in key:
        cp = ord(ch)
        if cp < 0x10000:
            units.append(cp)
        else:
            cp -= 0x10000
            units += [0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)]
    return units


def s3_bytes(key: str) -> bytes:
    return key.encode("utf-8")


CHARS = st.sampled_from(["a", "b", "0", "/", "é", "～", "（", "\ue000", "\uffee", "😀", "𝟓", "\U00010000"])
KEYS = st.lists(st.text(CHARS, min_size=1, max_size=5), max_size=40, unique=True)


@settings(max_examples=300, deadline=None)
@given(source=KEYS, dest_only=KEYS, data=st.data())
def test_every_destination_entry_is_found_exactly_once_for_any_unicode(source, dest_only, data):
    """Azure source order against an S3 destination listing (and the reverse, for restore)."""
    shared = data.draw(st.lists(st.sampled_from(source), unique=True) if source else st.just([]))
    dest = set(shared) | {k for k in dest_only if k not in source}
    for source_order, dest_order, dest_name in ((azure_units, s3_bytes, "s3"), (s3_bytes, azure_units, "azure")):
        entries = iter([(k, f"v-{k}") for k in sorted(dest, key=dest_order)])
        passed: list[str] = []
        order = utf16_order if dest_name == "azure" else utf8_order  # what the store declares
        lookup = InOrderLookup(entries, order, passed=lambda k, _v, seen=passed: seen.append(k))
        found = {}
        for key in sorted(source, key=source_order):
            value = lookup.find(key)
            if value is not None:
                found[key] = value
        assert found == {k: f"v-{k}" for k in shared}
        rest = [k for k, _ in lookup.rest()]
        assert sorted(passed + rest) == sorted(dest - set(shared))  # every other entry surfaces once


def test_azure_and_s3_orders_really_differ_on_these_keys():
    """The case the walk exists for: after a shared prefix, an emoji and a fullwidth tilde."""
    keys = ["a0", "a😀", "a～", "b"]
    assert sorted(keys, key=azure_units) == ["a0", "a😀", "a～", "b"]
    assert sorted(keys, key=s3_bytes) == ["a0", "a～", "a😀", "b"]


class MemoryStore:
    """Just enough of ObjectStore for the index: put and open of one object."""

    name = "s3"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key, stream, size, options):  # noqa: ANN001, ANN201
        self.options = options
        self.objects[key] = stream.read()
        assert len(self.objects[key]) == size

    def open(self, key):  # noqa: ANN001, ANN201
        from crosscloud.errors import NotFound
        from crosscloud.stores.base import ObjectInfo, ObjectReader

        if key not in self.objects:
            raise NotFound(key)
        data = self.objects[key]
        return ObjectReader(ObjectInfo(key, len(data), None, "e"), iter([data]))  # type: ignore[arg-type]


def test_the_index_writer_keeps_the_last_entry_per_key_sorted_in_the_source_order(monkeypatch):
    monkeypatch.setattr(index, "RUN_SIZE", 3)  # several sorted runs on disk, merged
    writer = index.IndexWriter(utf16_order, "utf-16")
    writer.add("b", "d1", "s1")
    writer.add("a～", "d2", "s2")
    writer.add("a😀", "d3", "s3")
    writer.add("b", "d4", "s4")  # a later copy of b: wins
    writer.add("c", "d5", "s5")
    writer.add("c", None, None)  # forgotten (the copy changed): dropped
    writer.add("a0", "d6", "s6")
    store = MemoryStore()
    writer.save(store, "i", {"run_id": "r"}, 5 * 2**20)  # type: ignore[arg-type]
    assert list(index.read(store, "i", "utf-16")) == [  # type: ignore[arg-type]
        ("a0", ("d6", "s6")), ("a😀", ("d3", "s3")), ("a～", ("d2", "s2")), ("b", ("d4", "s4"))]
    assert list(index.read(store, "i", "utf-8")) == []  # type: ignore[arg-type]  # another order: unused


def test_an_index_of_the_first_format_is_ignored_not_misread():
    import gzip

    store = MemoryStore()
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as out:
        out.write(json.dumps({"version": 1}).encode() + b"\n" + json.dumps(["k", "d", "s"]).encode() + b"\n")
    store.objects["i"] = raw.getvalue()
    assert list(index.read(store, "i", "utf-16")) == []  # type: ignore[arg-type]


def test_the_index_upload_holds_one_part_of_at_most_8_mib_whatever_the_copies_part_size():
    """Why: the index is ~35 MB at a million objects; uploaded with the copies' parts (here 64 MiB,
    4 at once) the end of a run buffered far more than the run itself (docs/benchmarks.md)."""
    writer = index.IndexWriter(utf16_order, "utf-16")
    writer.add("a", "d", "s")
    store = MemoryStore()
    writer.save(store, "i", {"run_id": "r"}, 64 * 2**20)  # type: ignore[arg-type]
    assert store.options.concurrency == 1
    assert store.options.part_size == store.options.multipart_threshold == 8 * 2**20
    assert list(index.read(store, "i", "utf-16")) == [("a", ("d", "s"))]  # type: ignore[arg-type]


ENTRY = st.tuples(st.sampled_from(["a", "b", "c", "d", "é", "😀", "～"]),
                  st.one_of(st.none(), st.sampled_from(["d1", "d2"])), st.sampled_from(["s1", "s2"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(ENTRY, max_size=60))
def test_runs_merged_by_levels_still_give_the_last_entry_per_key(adds):
    """Tiny runs and fan-in, so merges of every level happen; compared with a plain dict."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index, "RUN_SIZE", 2)
        patch.setattr(index, "FAN_IN", 3)
        writer = index.IndexWriter(utf16_order, "utf-16")
        expected: dict[str, tuple[str, str]] = {}
        for key, dest_etag, source_etag in adds:
            writer.add(key, dest_etag, source_etag if dest_etag else None)
            if dest_etag:
                expected[key] = (dest_etag, source_etag)
            else:
                expected.pop(key, None)  # a tombstone: no valid entry
        store = MemoryStore()
        writer.save(store, "i", {"run_id": "r"}, 5 * 2**20)  # type: ignore[arg-type]
    assert list(index.read(store, "i", "utf-16")) == sorted(expected.items(), key=lambda kv: azure_units(kv[0]))  # type: ignore[arg-type]


def test_open_run_files_stay_few_however_many_entries(monkeypatch):
    """A first copy records two entries per object: with a file per 10,000 entries, ten million
    objects kept 2,000 files open (past common open-file limits) until the index was written."""
    monkeypatch.setattr(index, "RUN_SIZE", 10)
    writer = index.IndexWriter(utf16_order, "utf-16")
    before = len(os.listdir("/proc/self/fd"))
    most = 0
    for i in range(20_000):  # 2,000 runs
        writer.add(f"k{i:05d}", None, None)
        writer.add(f"k{i:05d}", "d", "s")
        most = max(most, len(os.listdir("/proc/self/fd")) - before) if i % 50 == 0 else most
    assert most <= 3 * index.FAN_IN  # 2,000 runs of 10: three levels of at most FAN_IN - 1, and one more
    store = MemoryStore()
    writer.save(store, "i", {"run_id": "r"}, 5 * 2**20)  # type: ignore[arg-type]
    assert [k for k, _ in index.read(store, "i", "utf-16")] == [f"k{i:05d}" for i in range(20_000)]  # type: ignore[arg-type]
