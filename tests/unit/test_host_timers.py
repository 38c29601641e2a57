"""devstack/host/timers.py: `%SETTING%` resolution and NCRONTAB/TimeSpan schedules as the host reads them."""

from __future__ import annotations

import datetime as dt

import pytest

from devstack.host import timers


def test_binding_expressions_resolve_from_app_settings():
    """WebJobs NameResolverExtensions.ResolveWholeString: every %NAME% replaced, unset is an error."""
    assert timers.resolve("%A% and %B%!", {"A": "1", "B": ""}) == "1 and !"
    with pytest.raises(timers.IndexingError, match=r"^'%MISSING%' does not resolve to a value\.$"):
        timers.resolve("%MISSING%", {})
    with pytest.raises(timers.IndexingError, match="does not have a closing"):
        timers.resolve("0 %A * * *", {"A": "1"})


@pytest.mark.parametrize("expression", [
    "0 0 2 * * *", "0 */5 * * * *", "*/30 * * * *", "0 30 9 * * MON-FRI", "0 0 0 1 jan,Jul *",
    "0 0 12 * * 0,6", "5-1 * * * *", "0 0 0 31 2 *", "0 0/15 * * * *", "0 0 2 * * sat",
])
def test_ncrontab_expressions_the_host_accepts(expression):
    timers.parse_cron(expression)


@pytest.mark.parametrize("expression", [
    "", "* * * *", "0 0 0 0 * * *", "0 0 25 * * *", "0 60 * * * *", "0 0 0 0 * *", "0 0 0 * 13 *",
    "0 0 0 * * 7", "0 0 0 * * XYZ", "0 0 2 * *  /5", "0 a * * * *", "0 1,,2 * * * *", "0 */x * * * *",
])
def test_ncrontab_expressions_the_host_refuses(expression):
    with pytest.raises(ValueError):
        timers.parse_cron(expression)


def test_a_schedule_that_is_neither_cron_nor_timespan_is_the_hosts_error():
    """TimerSchedule.Create: cron first, then TimeSpan.TryParse, else its ArgumentException text."""
    assert timers.schedule("%S%", {"S": "0 0 2 * * *"})[0] == "0 0 2 * * *"
    assert timers.schedule("00:05:00", {})[1] == dt.timedelta(minutes=5)
    assert timers.schedule("1.02:00:00", {})[1] == dt.timedelta(days=1, hours=2)
    with pytest.raises(timers.IndexingError, match=r"^The schedule expression 'nightly' was not recognized "
                       r"as a valid cron expression or timespan string\.$"):
        timers.schedule("%S%", {"S": "nightly"})
    with pytest.raises(timers.IndexingError, match="does not resolve"):
        timers.schedule("%S%", {})


def test_next_occurrences_are_ncrontab_s_day_of_month_and_day_of_week():
    """NCrontab: both day fields must match (AND), Sunday = 0, UTC."""
    after = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    daily = timers.next_occurrences(timers.parse_cron("0 0 2 * * *"), after, 2)
    assert daily == [dt.datetime(2026, 1, 2, 2, 0, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, 2, 0, tzinfo=dt.UTC)]
    friday_13 = timers.next_occurrences(timers.parse_cron("0 0 0 13 * 5"), after, 1)
    assert friday_13 == [dt.datetime(2026, 2, 13, tzinfo=dt.UTC)]
