"""Counting a store's calls in integration tests (the real store underneath, one wrapper)."""

from __future__ import annotations

from typing import Any


def count_calls(monkeypatch: Any, store: Any, method: str) -> list[str]:
    """Wrap `store.method` (for the test's duration) so that every call's key is recorded."""
    calls: list[str] = []
    real = getattr(store, method)

    def counting(key: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(key)
        return real(key, *args, **kwargs)

    monkeypatch.setattr(store, method, counting)
    return calls


def data_keys(calls: list[str]) -> list[str]:
    """The calls on objects, not on the reserved `.crosscloud/` area (lease, index, run state)."""
    return [key for key in calls if ".crosscloud/" not in key]
