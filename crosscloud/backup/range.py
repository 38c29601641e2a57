"""A key range in one store's listing order: what a fan-out shard copies.

`(start_after, end]`: after `start_after` (None: from the first key) up to and including
`end` (None: to the last), compared in the listing order of the store the range was cut
from (Azure: UTF-16 code units, S3: UTF-8 bytes; `walk.py`). A range in one order is not
always one range in the other: see `RangePlanner` in shards.py for what that costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crosscloud.backup.walk import SortKey
from crosscloud.stores.base import Page


@dataclass(frozen=True)
class KeyRange:
    start_after: str | None = None
    end: str | None = None

    def after_start(self, key: str, order: SortKey) -> bool:
        return self.start_after is None or order(key) > order(self.start_after)  # type: ignore[operator]

    def before_end(self, key: str, order: SortKey) -> bool:
        return self.end is None or order(key) <= order(self.end)  # type: ignore[operator]

    def contains(self, key: str, order: SortKey) -> bool:
        return self.after_start(key, order) and self.before_end(key, order)

    def overlaps(self, other: KeyRange, order: SortKey) -> bool:
        """Whether the two ranges share a key (both in `order`)."""
        if self.end is not None and other.start_after is not None and \
                order(other.start_after) >= order(self.end):  # type: ignore[operator]
            return False
        return not (other.end is not None and self.start_after is not None
                    and order(self.start_after) >= order(other.end))  # type: ignore[operator]

    def pages(self, pages: Iterator[Page], order: SortKey) -> Iterator[Page]:
        """`pages` of a listing that started at (or before) the range, cut to the range.

        Keys up to `start_after` are dropped (in case a store starts earlier than asked); the
        listing stops at the first key past `end`. `order` is the listing store's `sort_key`.
        """
        for page in pages:
            items = [info for info in page.items if self.after_start(info.key, order)]
            inside = [info for info in items if self.before_end(info.key, order)]
            if len(inside) < len(items):
                yield Page(inside, None)
                return
            yield Page(inside, page.next_token)

    def as_json(self) -> dict[str, Any]:
        return {"start_after": self.start_after, "end": self.end}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRange:
        start, end = data.get("start_after"), data.get("end")
        if not (start is None or isinstance(start, str)) or not (end is None or isinstance(end, str)):
            raise ValueError("a key range's start_after and end are strings or null")
        return cls(start, end)
