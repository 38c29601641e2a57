"""Key validation, the inline cap and links, over an in-memory store."""

import pytest

from crosscloud import objects
from crosscloud.errors import BadRequest, NotFound, TooLarge
from tests.unit.fakes import MemoryStore, reader_of


@pytest.mark.parametrize("key", ["", "a\x00b", "line\nbreak", "tab\there", "del\x7f", "é" * 513])
def test_bad_keys(key):
    with pytest.raises(BadRequest) as excinfo:
        objects.validate_key(key)
    assert excinfo.value.code == "invalid_key"


@pytest.mark.parametrize("key", ["a", "dir/sub/file.txt", "space and ü.txt", "#?%+&=.txt", "x" * 1024])
def test_good_keys(key):
    assert objects.validate_key(key) == key


def test_cap_refuses_large_objects_with_a_hint():
    store = MemoryStore("s3", {"big": b"x" * 11})
    with pytest.raises(TooLarge, match=r"\?link=true"):
        objects.open_bounded(store, "big", max_bytes=10)
    with objects.open_bounded(store, "big", max_bytes=11) as reader:
        assert b"".join(reader.iter_chunks()) == b"x" * 11


def test_missing_object_is_not_found():
    with pytest.raises(NotFound):
        objects.open_bounded(MemoryStore("azure"), "nope", 10)
    with pytest.raises(NotFound):
        objects.short_lived_link(MemoryStore("azure"), "nope", 60)


def test_reader_is_file_like():
    reader = reader_of(b"abcdefghij", chunk=3)
    assert reader.read(4) == b"abcd"
    assert reader.read(0) == b""
    assert reader.read(100) == b"efghij"
    assert reader.read(1) == b""
    assert reader_of(b"0123456789").read() == b"0123456789"
