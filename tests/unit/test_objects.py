"""Key validation, the inline cap with its redirect link, and exact reads, over an in-memory store."""

import pytest

from crosscloud import objects
from crosscloud.errors import BadRequest, IntegrityError, NotFound
from crosscloud.stores.azure import check_blob_name
from tests.unit.fakes import MemoryStore, reader_of


@pytest.mark.parametrize("key", ["", "a\x00b", "line\nbreak", "tab\there", "del\x7f", "é" * 513])
def test_bad_keys(key):
    with pytest.raises(BadRequest) as excinfo:
        objects.validate_key(key)
    assert excinfo.value.code == "invalid_key"


@pytest.mark.parametrize("key", ["a", "dir/sub/file.txt", "space and ü.txt", "#?%+&=.txt", "x" * 1024,
                                 "a/../b", "..", "//", "/lead", "trail/", "%2F", "%2e%2e/x"])
def test_good_keys(key):
    """Every key S3 can hold passes the shared check (Azure's own rules come on top)."""
    assert objects.validate_key(key) == key


@pytest.mark.parametrize("key", ["..", ".", "../secret/secret.txt", "fz/dir/../plain.txt", "./a", "a/.",
                                 "a/./b", "a/...", "file.", "dir./file", "..\\secret\\secret.txt", "a\\b"])
def test_azure_refuses_names_the_service_resolves_to_another_blob(key):
    """Azure blob naming rules: no path segment ends with a dot; `\\` is read as `/`."""
    with pytest.raises(BadRequest) as excinfo:
        check_blob_name(key)
    assert excinfo.value.code == "invalid_key"
    assert "another blob" in excinfo.value.message


@pytest.mark.parametrize("key", ["a.b/c.txt", ".hidden", "dir/.env", "..x", "a/.b/c", "//x", "/lead",
                                 "trail/", "%2e%2e/x", "x%2F..y", "a b/ü#?%+.txt"])
def test_azure_accepts_names_it_keeps(key):
    assert check_blob_name(key) == key


def test_at_the_cap_the_bytes_come_inline_exactly():
    store = MemoryStore("s3", {"k": b"0123456789"})
    result = objects.read_or_link(store, "k", max_bytes=10, ttl_seconds=60)
    assert isinstance(result, objects.Inline)
    assert result.body == b"0123456789"
    assert type(result.body) is bytes  # func.HttpResponse keeps bytes as is (no second copy)
    assert result.info.size == 10
    assert store.closed == ["k"]


def test_above_the_cap_a_link_and_the_stream_closed_unread():
    store = MemoryStore("s3", {"big": b"x" * 11})
    result = objects.read_or_link(store, "big", max_bytes=10, ttl_seconds=60)
    assert isinstance(result, objects.Link)
    assert result.url == "memory://s3/big?ttl=60"
    assert store.read_bytes["big"] == 0
    assert store.closed == ["big"]
    assert store.stat_calls == 1  # the open's own; the link adds no second lookup


def test_cap_of_zero_always_links_except_empty_objects():
    store = MemoryStore("azure", {"empty": b"", "one": b"1"})
    assert isinstance(objects.read_or_link(store, "one", 0, 60), objects.Link)
    assert objects.read_or_link(store, "empty", 0, 60) == objects.Inline(store.stat("empty"), b"")


def test_missing_object_is_not_found():
    with pytest.raises(NotFound):
        objects.read_or_link(MemoryStore("azure"), "nope", 10, 60)
    with pytest.raises(NotFound):
        objects.short_lived_link(MemoryStore("azure"), "nope", 60)


def test_read_all_refuses_short_and_long_streams():
    short = reader_of(b"abc")
    object.__setattr__(short, "info", short.info.__class__("k", 5, short.info.last_modified, "e"))
    with pytest.raises(IntegrityError, match="short read"):
        objects.read_all(short)
    long = reader_of(b"abcdef")
    object.__setattr__(long, "info", long.info.__class__("k", 4, long.info.last_modified, "e"))
    with pytest.raises(IntegrityError, match="more than"):
        objects.read_all(long)


def test_reader_is_file_like():
    reader = reader_of(b"abcdefghij", chunk=3)
    assert reader.read(4) == b"abcd"
    assert reader.read(0) == b""
    assert reader.read(100) == b"efghij"
    assert reader.read(1) == b""
    assert reader_of(b"0123456789").read() == b"0123456789"


def test_a_store_that_reads_ahead_is_asked_the_size_first():
    """Azure's download_blob GETs a first range on open: above the cap it is never opened."""
    store = MemoryStore("azure", {"big": b"x" * 11, "small": b"y"})
    store.reads_ahead_on_open = True
    assert isinstance(objects.read_or_link(store, "big", 10, 60), objects.Link)
    assert "big" not in store.read_bytes
    assert store.closed == []
    assert objects.read_or_link(store, "small", 10, 60).body == b"y"
