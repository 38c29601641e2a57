"""The time budget of one call to a cloud: whatever the settings, an interactive call to a
cloud that never answers ends within UPSTREAM_DEADLINE_SECONDS, and the SDK clients get it."""

from __future__ import annotations

import pytest

from crosscloud.settings import Settings
from crosscloud.stores import factory
from crosscloud.stores.factory import BACKOFF_S, Budget
from tests.unit.test_settings import GOOD


@pytest.mark.parametrize("deadline", [5, 8, 15, 60, 200])
@pytest.mark.parametrize("read_cap", [1, 30, 600])
def test_worst_case_fits_the_deadline(deadline, read_cap):
    budget = Budget.from_settings(Settings({"UPSTREAM_DEADLINE_SECONDS": str(deadline),
                                            "UPSTREAM_TIMEOUT_SECONDS": str(read_cap)}))
    assert budget.attempts == 2
    assert budget.read_s > 0
    assert budget.connect_s > 0
    assert budget.attempts * (budget.connect_s + budget.read_s) + BACKOFF_S <= deadline
    assert budget.read_s <= read_cap


def test_default_deadline_is_15_seconds_and_bulk_keeps_the_read_timeout():
    interactive = Budget.from_settings(Settings({}))
    assert 2 * (interactive.connect_s + interactive.read_s) + BACKOFF_S <= 15
    bulk = Budget.from_settings(Settings({"UPSTREAM_TIMEOUT_SECONDS": "45"}), bulk=True)
    assert (bulk.read_s, bulk.attempts, bulk.interactive) == (45, 4, False)


def test_the_s3_client_and_its_sts_exchange_get_the_budget(monkeypatch):
    for name, value in {**GOOD, "UPSTREAM_DEADLINE_SECONDS": "10"}.items():
        monkeypatch.setenv(name, value)
    factory.reset_for_tests()
    try:
        store = factory.s3_store()
        config = store.client.meta.config
        budget = Budget.from_settings(Settings())
        assert (config.connect_timeout, config.read_timeout) == (budget.connect_s, budget.read_s)
        assert config.retries == {"mode": "standard", "total_max_attempts": 2}
        assert factory.s3_store(backup=True).client.meta.config.read_timeout == 30  # bulk
    finally:
        factory.reset_for_tests()
