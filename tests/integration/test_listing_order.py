"""The combined listing against Azurite + moto: each cloud's own order, long keys, forged
cursors, `limit` digits (issues 11 and 14). Called as the worker calls the function."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from tests.integration.test_objects_api import body, call_list
from tests.unit.fakes import merged_in_documented_order

pytestmark = pytest.mark.integration

ORDER_KEYS = ["a0", "a😀", "a～", "b", "a😀z", "a～z", "（", "😀", "a\ue000", "a𐀀"]


def page_all(**params: str) -> tuple[list[tuple[str, str]], list[str]]:
    seen, cursors, cursor = [], [], None
    while True:
        response = call_list(**params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.get_body()
        page = body(response)
        seen.extend((i["key"], i["source"]) for i in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return seen, cursors
        cursors.append(cursor)
        assert len(cursors) < 100


@pytest.fixture
def unicode_seeded(env, prefix, azure_admin, aws_admin):
    for key in ORDER_KEYS:
        azure_admin.upload_blob(prefix + key, b"a", overwrite=True)
        aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=prefix + key, Body=b"s")
    # Each service's own order, as its own listing gives it (admin clients, one page).
    azure = [b.name for b in azure_admin.list_blobs(name_starts_with=prefix)]
    s3 = [o["Key"] for o in aws_admin.list_objects_v2(Bucket=env["S3_BUCKET"], Prefix=prefix)["Contents"]]
    return prefix, azure, s3


def test_the_services_order_names_differently(unicode_seeded):
    """What the listing copes with: Azure (Azurite) lists by UTF-16 code units, S3 (moto) by
    UTF-8 bytes, so an astral name and a U+E000-U+FFFF one swap places."""
    prefix, azure, s3 = unicode_seeded
    assert azure.index(prefix + "a😀") < azure.index(prefix + "a～")
    assert s3.index(prefix + "a😀") > s3.index(prefix + "a～")


@pytest.mark.parametrize("source", ["all", "azure", "s3"])
@pytest.mark.parametrize("limit", ["1", "2", "3"])
def test_paging_returns_every_object_once_in_each_clouds_own_order(unicode_seeded, source, limit):
    """Issue 11: a resumed Azure listing skipped `a～` after `a😀`."""
    prefix, azure, s3 = unicode_seeded
    seen, _ = page_all(prefix=prefix, source=source, limit=limit)
    expected = merged_in_documented_order(azure if source != "s3" else [], s3 if source != "azure" else [])
    assert seen == expected
    assert len(set(seen)) == len(ORDER_KEYS) * (2 if source == "all" else 1)


@pytest.mark.parametrize("source", ["all", "azure", "s3"])
@pytest.mark.parametrize("limit", ["1", "2", "3"])
def test_cursor_after_the_longest_legal_keys_is_at_most_2048_characters(env, prefix, azure_admin, aws_admin,
                                                                        source, limit):
    """S3 keys of 1,024 UTF-8 bytes and Azure names of 1,024 characters, none shared."""
    def longest(tag: str, i: int) -> str:
        return prefix + (tag * 1024)[: 1024 - len(prefix) - 3] + f"{i:03d}"

    azure_keys, s3_keys = [longest("az-é", i) for i in range(4)], [longest("s3/", i) for i in range(4)]
    assert all(len(k) == 1024 for k in azure_keys)  # characters (some of 2 bytes)
    assert all(len(k.encode()) == 1024 for k in s3_keys)
    for key in azure_keys:
        azure_admin.upload_blob(key, b"a", overwrite=True)
    for key in s3_keys:
        aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=key, Body=b"s")
    seen, cursors = page_all(prefix=prefix, source=source, limit=limit)
    expected = (azure_keys if source != "s3" else []) + (s3_keys if source != "azure" else [])
    assert sorted(k for k, _ in seen) == sorted(expected)
    assert cursors
    assert max(len(c) for c in cursors) <= 2048


def test_an_old_style_cursor_with_a_made_up_page_token_is_400(unicode_seeded):
    """Issue 14: the checksum key is public, so anyone could sign a cursor with made-up page
    tokens; they got 503 s3_error with Retry-After."""
    seeded = unicode_seeded[0]
    body_ = json.dumps({"v": 1, "s": "all", "p": seeded,
                        "pos": {"azure": ["made-up", None], "s3": ["made-up", None]}},
                       separators=(",", ":")).encode()
    mac = hmac.new(b"crosscloud-listing-cursor-v1", body_, hashlib.sha256).digest()[:12]
    forged = base64.urlsafe_b64encode(mac + body_).rstrip(b"=").decode()
    response = call_list(prefix=seeded, cursor=forged)
    assert response.status_code == 400, response.get_body()
    assert body(response)["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("after", ["zzz", "😀" * 300, "a\uffff", "~" * 1100])
def test_a_signed_cursor_with_made_up_positions_is_never_a_5xx(unicode_seeded, after):
    from crosscloud import cursor

    seeded = unicode_seeded[0]

    forged = cursor.encode(cursor.Cursor("all", seeded, {"azure": cursor.Position(seeded + after),
                                                         "s3": cursor.Position(seeded + after)}))
    response = call_list(prefix=seeded, cursor=forged)
    assert response.status_code in (200, 400), response.get_body()
    if response.status_code == 400:
        assert body(response)["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("limit", ["١٢", "𝟓", "５", "+5", "1_0"])
def test_limit_in_digits_other_than_ascii_is_400(env, limit):
    """Issue 14: `int()` took `limit=١٢` and `limit=𝟓` as 12 and 5."""
    response = call_list(limit=limit)
    assert response.status_code == 400
    assert body(response)["error"]["code"] == "invalid_limit"
