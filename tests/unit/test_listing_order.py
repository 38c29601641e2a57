"""The combined listing over clouds that order keys differently (issue 11 items 1-2).

Azure lists names by UTF-16 code units, S3 keys by UTF-8 bytes. The fakes order like each
service by themselves (tests/unit/fakes.py); the reference merge below is written from
the documented order (docs/listing.md), not from crosscloud.listing.
"""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crosscloud import cursor, listing
from crosscloud.errors import BadRequest
from crosscloud.stores.base import StartRefused
from tests.unit.fakes import MemoryStore, _code_units, merged_in_documented_order

ASCII = "ab0/ "
ASTRAL = "😀😁𐀀\U0010ffff"  # above U+FFFF: a surrogate pair in UTF-16
HIGH_BMP = "\ue000～（\uffff"  # U+E000-U+FFFF: after surrogates in UTF-16, before astral in UTF-8
CHARS = st.one_of(st.sampled_from(ASCII), st.sampled_from(ASTRAL), st.sampled_from(HIGH_BMP),
                  st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
                  st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF))
KEYS = st.sets(st.text(CHARS, min_size=1, max_size=4), max_size=25)


def stores_for(azure_keys, s3_keys, azure_page=5000, s3_page=1000, source="all"):
    stores = {"azure": MemoryStore("azure", dict.fromkeys(azure_keys, b"a"), azure_page, utf16=True),
              "s3": MemoryStore("s3", dict.fromkeys(s3_keys, b"s"), s3_page)}
    return stores if source == "all" else {source: stores[source]}


def page_through(stores, limit, source="all", prefix=""):
    seen, cur, cursors = [], None, []
    while True:
        page = listing.list_objects(stores, source=source, prefix=prefix, limit=limit, cursor=cur)
        seen.extend((e.info.key, e.source) for e in page.items)
        cur = page.next_cursor
        if not cur:
            return seen, cursors
        cursors.append(cur)
        assert len(cursors) < 1000


def documented_order(azure_keys, s3_keys, source="all"):
    """docs/listing.md: each cloud in its own order; of the two next objects, the one whose
    key is smaller as UTF-8 bytes comes first, Azure's on equal keys."""
    azure = sorted(azure_keys, key=_code_units) if source in ("all", "azure") else []
    s3 = sorted(s3_keys) if source in ("all", "s3") else []  # Python's str order is UTF-8's
    return merged_in_documented_order(azure, s3)


@pytest.mark.parametrize("source", ["all", "azure", "s3"])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_resumed_azure_listing_keeps_names_that_utf16_puts_after_astral_ones(source, limit):
    """Issue 11: `a0, a😀, a～, b` with limit=2 never returned `a～` from Azure."""
    keys = ["a0", "a😀", "a～", "b"]
    seen, _ = page_through(stores_for(keys, keys, source=source), limit, source)
    assert seen == documented_order(keys, keys, source)
    assert sorted(seen) == sorted({(k, s) for k in keys for s in (["azure", "s3"] if source == "all" else [source])})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(azure_keys=KEYS, s3_keys=KEYS, limit=st.integers(1, 6), azure_page=st.integers(1, 4),
       s3_page=st.integers(1, 4), source=st.sampled_from(["all", "azure", "s3"]))
def test_every_object_exactly_once_in_the_documented_order(azure_keys, s3_keys, limit, azure_page,
                                                           s3_page, source):
    stores = stores_for(azure_keys, s3_keys, azure_page, s3_page, source)
    seen, cursors = page_through(stores, limit, source)
    assert seen == documented_order(azure_keys, s3_keys, source)  # so each object exactly once
    longest = max((len(k.encode()) for k in azure_keys | s3_keys), default=0)
    assert all(len(c) <= 4 * (2 * longest + 20) // 3 + 20 for c in cursors)


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.text(CHARS, min_size=1, max_size=3), min_size=1, max_size=12, unique=True),
       limit=st.integers(1, 4))
def test_a_prefix_is_honoured_across_pages(keys, limit):
    prefix = "p/"
    inside = {prefix + k for k in keys}
    outside = {k + "x" for k in keys}
    stores = stores_for(inside | outside, inside | outside, 2, 3)
    seen, _ = page_through(stores, limit, prefix=prefix)
    assert seen == documented_order(inside, inside)


def test_a_cloud_declaring_the_wrong_order_is_caught():
    """The listing relies on each store's declared order: declared wrong, objects go missing."""
    keys = ["a0", "a😀", "a～", "b", "a😀z", "a～z"]
    stores = stores_for(keys, keys)
    stores["azure"].sort_key = stores["s3"].sort_key  # Azure claiming S3's order
    results = [page_through(stores, limit)[0] for limit in (1, 2, 3, 4)]
    assert any(seen != documented_order(keys, keys) for seen in results)


def longest_keys(seed, count, unit):
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./ "
    return {"".join(rng.choice(alphabet) for _ in range(unit - 4)) + f"{i:04d}" for i in range(count)}


@pytest.mark.parametrize("source", ["all", "azure", "s3"])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_cursor_after_the_longest_keys_fits_in_2048_characters(source, limit):
    """S3 keys of 1,024 UTF-8 bytes, Azure names of 1,024 characters, none shared."""
    azure, s3 = longest_keys(1, 6, 1024), longest_keys(2, 6, 1024)
    assert all(len(k) == 1024 == len(k.encode()) for k in azure | s3)
    seen, cursors = page_through(stores_for(azure, s3, 4, 3, source), limit, source)
    assert len(seen) == len(documented_order(azure, s3, source))
    assert cursors
    assert max(len(c) for c in cursors) <= 2048


def test_a_cursor_keeps_keys_relative_to_the_prefix():
    prefix = "p" * 1000 + "/"
    keys = {prefix + k for k in ("a", "b", "c")}
    _, cursors = page_through(stores_for(keys, keys), 1, prefix=prefix)
    assert max(len(c) for c in cursors) < 60


class RefusingStore(MemoryStore):
    """A cloud that refuses to start a listing at a key (as a service answers 400)."""

    def list_pages(self, prefix="", page_size=None, start_after=None):
        if start_after is not None and "\x00" in start_after:
            raise StartRefused("the service refused the start key")
        yield from super().list_pages(prefix, page_size, start_after)


def test_a_signed_cursor_whose_position_the_service_refuses_is_invalid_cursor():
    """Issue 14: the checksum key is public; a position the service refuses is bad input."""
    stores = {"azure": RefusingStore("azure", {"a": b""}, utf16=True), "s3": MemoryStore("s3", {"a": b""})}
    forged = cursor.encode(cursor.Cursor("all", "", {"azure": cursor.Position("x\x00y"),
                                                     "s3": cursor.Position()}))
    with pytest.raises(BadRequest) as excinfo:
        listing.list_objects(stores, cursor=forged)
    assert excinfo.value.code == "invalid_cursor"
    assert "azure position" in excinfo.value.message


@pytest.mark.parametrize("positions", [
    {"azure": cursor.Position("zzz"), "s3": cursor.Position(done=True)},     # made up, past the end
    {"azure": cursor.Position("😀" * 300), "s3": cursor.Position("\uffff")},  # made up, odd keys
    {"azure": cursor.Position(done=True), "s3": cursor.Position(done=True)},
])
def test_a_signed_made_up_position_lists_from_there(positions):
    stores = stores_for({"a", "b"}, {"a", "b"})
    page = listing.list_objects(stores, cursor=cursor.encode(cursor.Cursor("all", "", positions)))
    assert (page.items, page.next_cursor) == ([], None)


@pytest.mark.parametrize("body", [
    b"\x02",                                  # no positions
    b"\x02\x00",                              # one position for two sources
    b"\x02\x00\x00\x00",                      # one too many
    b"\x02\x07\x00",                          # unknown tag
    b"\x02\x02\x00\x00\x00\x05ab\x00",        # key shorter than its length
    b"\x02\x02\x00\x03\x00\x01a\x00",         # shares more than the previous key has
    b"\x02\x02\x00\x00\x00\x02\xff\xfe\x00",  # not UTF-8
    b"\x01\x00\x00",                          # another version
])
def test_a_signed_malformed_body_is_invalid_cursor(body):
    text = base64.urlsafe_b64encode(cursor._mac("all", "", body) + body).decode()  # signed as anyone can
    with pytest.raises(BadRequest) as excinfo:
        cursor.decode(text, source="all", prefix="", sources=("azure", "s3"))
    assert excinfo.value.code == "invalid_cursor"
