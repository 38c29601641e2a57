"""The combined listing's merge and paging, over in-memory stores."""

from __future__ import annotations

import random

import pytest

from crosscloud import cursor, listing
from crosscloud.errors import BadRequest
from tests.unit.fakes import MemoryStore


def _all_pages(stores, limit, source="all", prefix=""):
    seen, cur, pages = [], None, 0
    while True:
        page = listing.list_objects(stores, source=source, prefix=prefix, limit=limit, cursor=cur)
        seen.extend((e.info.key, e.source) for e in page.items)
        pages += 1
        cur = page.next_cursor
        assert pages < 10_000
        if not cur:
            return seen, pages


@pytest.mark.parametrize("seed", range(25))
def test_every_object_exactly_once_in_order(seed):
    rng = random.Random(seed)
    alphabet = ["a", "b", "é", " ", "/", "z", "日", "%", "+"]
    keys = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(0, 60))}
    azure_keys = {k for k in keys if rng.random() < 0.6}
    s3_keys = {k for k in keys if rng.random() < 0.6}
    stores = {"azure": MemoryStore("azure", dict.fromkeys(azure_keys, b"x"), page_size=rng.randint(1, 7)),
              "s3": MemoryStore("s3", dict.fromkeys(s3_keys, b"y"), page_size=rng.randint(1, 7))}
    seen, _ = _all_pages(stores, limit=rng.randint(1, 9))
    expected = sorted([(k, "azure") for k in azure_keys] + [(k, "s3") for k in s3_keys],
                      key=lambda t: (t[0].encode(), t[1]))
    assert seen == expected


def test_no_trailing_empty_page_when_the_data_ends_on_a_page_boundary():
    stores = {"azure": MemoryStore("azure", {"a": b"", "b": b""}), "s3": MemoryStore("s3", {"c": b"", "d": b""})}
    seen, pages = _all_pages(stores, limit=2)
    assert len(seen) == 4
    assert pages == 2


def test_prefix_and_single_source():
    stores = {"s3": MemoryStore("s3", {"logs/1": b"", "logs/2": b"", "other": b""})}
    seen, _ = _all_pages(stores, limit=1, source="s3", prefix="logs/")
    assert seen == [("logs/1", "s3"), ("logs/2", "s3")]


def test_a_failing_cloud_fails_the_page_instead_of_returning_part_of_it():
    broken = MemoryStore("s3", {"b": b""})
    broken.fail_list = True
    with pytest.raises(RuntimeError):
        listing.list_objects({"azure": MemoryStore("azure", {"a": b""}), "s3": broken})


def test_exhausted_cloud_is_not_listed_again():
    azure = MemoryStore("azure", {"a": b""})
    s3 = MemoryStore("s3", {f"k{i}": b"" for i in range(6)})
    page = listing.list_objects({"azure": azure, "s3": s3}, limit=2)
    listing.list_objects({"azure": azure, "s3": s3}, limit=2, cursor=page.next_cursor)
    assert azure.list_calls == 1


def test_cursor_is_bound_to_source_and_prefix():
    stores = {"azure": MemoryStore("azure", {f"p/{i}": b"" for i in range(5)}),
              "s3": MemoryStore("s3", {})}
    page = listing.list_objects(stores, prefix="p/", limit=2)
    with pytest.raises(BadRequest, match="another source or prefix"):
        listing.list_objects(stores, prefix="q/", limit=2, cursor=page.next_cursor)


@pytest.mark.parametrize("mangle", [
    lambda c: c[:-3],                       # truncated
    lambda c: c[:20] + ("A" if c[20] != "A" else "B") + c[21:],  # one character changed
    lambda c: "not a cursor at all!",
    lambda c: "",                           # empty is "no cursor", handled by the caller
])
def test_forged_or_truncated_cursor_is_bad_request(mangle):
    stores = {"azure": MemoryStore("azure", {f"{i}": b"" for i in range(5)}), "s3": MemoryStore("s3", {})}
    good = listing.list_objects(stores, limit=1).next_cursor
    bad = mangle(good)
    if not bad:
        assert listing.list_objects(stores, limit=1, cursor=bad or None).items
        return
    with pytest.raises(BadRequest) as excinfo:
        listing.list_objects(stores, limit=1, cursor=bad)
    assert excinfo.value.code == "invalid_cursor"


def test_a_signed_cursor_with_positions_for_other_sources_is_refused():
    forged = cursor.encode(cursor.Cursor("all", "", {"azure": cursor.Position()}))
    with pytest.raises(BadRequest, match="do not match the sources"):
        cursor.decode(forged, source="all", prefix="", sources=("azure", "s3"))


@pytest.mark.parametrize("raw", ["0", "-1", "5001", "ten", "1.5", " ", "١٢", "𝟓", "+5", " 5", "1_0", "５"])
def test_limit_validation(raw):
    with pytest.raises(BadRequest) as excinfo:
        listing.parse_limit(raw)
    assert excinfo.value.code == "invalid_limit"


def test_limit_default_and_bounds():
    assert listing.parse_limit(None) == 1000
    assert listing.parse_limit("1") == 1
    assert listing.parse_limit("5000") == 5000


@pytest.mark.parametrize("raw", ["gcs", "AZURE ", "all,s3"])
def test_unknown_source(raw):
    with pytest.raises(BadRequest):
        listing.parse_source(raw)


def test_prefix_with_control_characters_is_refused():
    with pytest.raises(BadRequest):
        listing.parse_prefix("a\nb")
