"""Which index a run or a restore reads: the last finished backup's, in-process or fan-out."""

from __future__ import annotations

import datetime as dt
import io
import json

from crosscloud.backup import index
from crosscloud.backup.range import KeyRange
from crosscloud.stores.base import ObjectInfo, PutOptions, utf8_order
from tests.unit.test_backup import EPOCH, FakeStore


class DatedStore(FakeStore):
    """A FakeStore whose objects carry the time they were written (one second apart)."""

    def __init__(self) -> None:
        super().__init__("s3")
        self.written: dict[str, dt.datetime] = {}

    def put(self, key, stream, size, options):  # noqa: ANN001, ANN201 - the base's signature
        self.written[key] = EPOCH + dt.timedelta(seconds=len(self.written))
        return super().put(key, stream, size, options)

    def _info(self, key, blob, with_metadata=True) -> ObjectInfo:  # noqa: ANN001, FBT002
        info = super()._info(key, blob, with_metadata)
        return ObjectInfo(info.key, info.size, self.written.get(key, EPOCH), info.etag, info.content_type,
                          info.content_md5, info.metadata)


def write_index(store: FakeStore, key: str, entries: dict[str, str]) -> None:
    writer = index.IndexWriter(utf8_order, "utf8")
    for name, etag in entries.items():
        writer.add(name, f"d-{etag}", etag)
    writer.save(store, key, {"run_id": key}, 5 * 1024 * 1024)


def publish(store: FakeStore, segments: list[tuple[KeyRange, str]]) -> None:
    body = json.dumps({"run_id": "fan", "order": "utf8",
                       "segments": [{"key": key, **r.as_json()} for r, key in segments]}).encode()
    store.put("bk/" + index.SEGMENTS_NAME, io.BytesIO(body), len(body), PutOptions())


def fan_out_index(store: FakeStore) -> None:
    write_index(store, "bk/seg/0", {"a/1": "s1", "a/2": "s2"})
    write_index(store, "bk/seg/1", {"b/1": "s3", "c/1": "s4"})
    publish(store, [(KeyRange(None, "a/2"), "bk/seg/0"), (KeyRange("a/2", None), "bk/seg/1")])


def test_the_segments_of_a_fan_out_run_are_read_in_order_as_one_index():
    store = DatedStore()
    fan_out_index(store)
    found = list(index.latest(store, "bk/", "utf8", utf8_order))
    assert [k for k, _ in found] == ["a/1", "a/2", "b/1", "c/1"]
    assert found[0][1] == ("d-s1", "s1")


def test_a_single_index_written_after_the_segments_wins_and_an_older_one_does_not():
    older = DatedStore()
    write_index(older, "bk/" + index.INDEX_NAME, {"a/1": "old"})
    fan_out_index(older)
    assert [e for _, e in index.latest(older, "bk/", "utf8", utf8_order)][0] == ("d-s1", "s1")

    newer = DatedStore()
    fan_out_index(newer)
    write_index(newer, "bk/" + index.INDEX_NAME, {"a/1": "new"})
    assert list(index.latest(newer, "bk/", "utf8", utf8_order)) == [("a/1", ("d-new", "new"))]


def test_a_prefix_reads_only_segments_that_can_hold_its_keys():
    store = DatedStore()
    fan_out_index(store)
    store.calls.clear()
    assert [k for k, _ in index.latest(store, "bk/", "utf8", utf8_order, within="b/")] == ["b/1", "c/1"]
    assert [k for k, _ in index.latest(store, "bk/", "utf8", utf8_order, within="a/")] == ["a/1", "a/2", "b/1",
                                                                                            "c/1"]
    assert store.calls["open"] == (1 + 1) + (1 + 2)  # the pointer and one segment, then the pointer and both


def test_a_pointer_in_another_order_or_unreadable_falls_back_to_the_single_index():
    store = DatedStore()
    write_index(store, "bk/" + index.INDEX_NAME, {"a/1": "single"})
    fan_out_index(store)
    assert [e for _, e in index.latest(store, "bk/", "utf16", utf8_order)] == []  # the single one is utf8 too
    store.put("bk/" + index.SEGMENTS_NAME, io.BytesIO(b"{not json"), 9, PutOptions())
    assert list(index.latest(store, "bk/", "utf8", utf8_order)) == [("a/1", ("d-single", "single"))]
