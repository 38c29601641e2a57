"""The point-in-time view remembers versions only for recently listed keys (memory bounded)."""

from __future__ import annotations

import contextlib
import datetime as dt

from crosscloud.stores import s3_versions


class Paginator:
    def __init__(self, keys: list[str]):
        self.keys = keys

    def paginate(self, Prefix: str = "", **_kwargs):  # noqa: ANN003, ANN201, N803 - boto3's names
        moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        keys = [k for k in self.keys if k.startswith(Prefix)]
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            yield {"Versions": [{"Key": k, "VersionId": f"v-{k}", "IsLatest": True, "LastModified": moment,
                                 "Size": 1, "ETag": '"e"'} for k in chunk],
                   "IsTruncated": start + 1000 < len(keys)}


class Client:
    def __init__(self, keys: list[str]):
        self._paginator = Paginator(keys)

    def get_paginator(self, _name: str) -> Paginator:
        return self._paginator


class Store:
    bucket = "b"

    @contextlib.contextmanager
    def _errors(self, *_args):  # noqa: ANN002, ANN202 - S3Store's error mapping, not under test
        yield

    def __init__(self, keys: list[str]):
        self.client = Client(keys)


def test_versions_are_remembered_for_recent_keys_only_and_older_ones_are_looked_up_again(monkeypatch):
    monkeypatch.setattr(s3_versions, "REMEMBERED", 1500)
    keys = [f"k{i:05d}" for i in range(5000)]
    view = s3_versions.VersionedView(Store(keys), dt.datetime(2026, 6, 1, tzinfo=dt.UTC))  # type: ignore[arg-type]
    listed = [info.key for page in view.list_pages("") for info in page.items]
    assert listed == keys
    assert len(view._versions) == 1500  # noqa: SLF001 - the bound under test
    assert view.version_of("k04999") == "v-k04999"  # remembered
    assert view.version_of("k00001") == "v-k00001"  # forgotten, listed again
