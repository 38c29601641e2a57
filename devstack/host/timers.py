"""Timer triggers as the host indexes them: `%SETTING%` resolved, the schedule validated.

Copied behaviours: WebJobs' `NameResolverExtensions.ResolveWholeString` (every `%NAME%` is
replaced by the app setting; an unset one is an error "'%NAME%' does not resolve to a
value."), the timer extension's `TimerSchedule.Create` (an NCRONTAB expression, six fields
with seconds or five without, else a .NET TimeSpan, else "The schedule expression '…' was
not recognized as a valid cron expression or timespan string."), and NCrontab's field rules
(ranges, lists, steps, month and day names by prefix, Sunday = 0, day-of-month AND
day-of-week). A function whose schedule fails is put in error; the others still run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

# (minimum, maximum, names) per NCrontab field, seconds first.
FIELDS = (
    (0, 59, ()), (0, 59, ()), (0, 23, ()), (1, 31, ()),
    (1, 12, ("January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December")),
    (0, 6, ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")),
)


class IndexingError(ValueError):
    """Why the host could not index a function (the text it reports)."""


def resolve(expression: str, settings: Mapping[str, str]) -> str:
    """Replace each `%NAME%` by the app setting NAME, as the host's name resolver does."""
    out, index = [], 0
    while (start := expression.find("%", index)) >= 0:
        end = expression.find("%", start + 1)
        if end < 0:
            raise IndexingError(f"The '%' at position {start} does not have a closing '%'")
        name = expression[start + 1:end]
        value = settings.get(name)
        if value is None:
            raise IndexingError(f"'%{name}%' does not resolve to a value.")
        out += [expression[index:start], value]
        index = end + 1
    return "".join(out) + expression[index:]


def _value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text[:1].isdigit():
        return int(text)
    for index, name in enumerate(names):
        if name.lower().startswith(text.lower()) and text:
            return index + low
    raise ValueError(f"'{text}' is not a valid value")


def _field(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """One NCrontab field (`*`, `5`, `1-5`, `*/15`, `10/5`, `MON-FRI`, lists of these) as values."""
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = max(int(step_text), 1) if step_text else 1
        if body == "*":
            first, last = low, high
        elif "-" in body[1:]:
            cut = body.index("-", 1)
            first, last = sorted((_value(body[:cut], low, high, names), _value(body[cut + 1:], low, high, names)))
        else:
            first = _value(body, low, high, names)
            last = high if step_text else first
        if first < low or last > high:
            raise ValueError(f"'{item}' is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


def parse_cron(expression: str) -> list[set[int]]:
    """The allowed values of the six fields; raises ValueError when NCrontab would refuse it."""
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ValueError(f"'{expression}' must have 5 or 6 fields")
    parts = (["0"] if len(parts) == 5 else []) + parts
    return [_field(text, *spec) for text, spec in zip(parts, FIELDS, strict=True)]


def parse_timespan(expression: str) -> dt.timedelta | None:
    """.NET `TimeSpan.TryParse` for the common forms: `d`, `hh:mm`, `hh:mm:ss`, `d.hh:mm:ss[.f]`."""
    match = re.fullmatch(r"\s*(-)?(?:(\d+)\.)?(\d+)(?::(\d+))?(?::(\d+))?(?:\.(\d{1,7}))?\s*", expression)
    if not match:
        return None
    sign, days, first, minutes, seconds, fraction = match.groups()
    if minutes is None:
        if days or seconds or fraction:
            return None
        span = dt.timedelta(days=int(first))
    else:
        hours, minutes_i, seconds_i = int(first), int(minutes), int(seconds or 0)
        if hours > 23 or minutes_i > 59 or seconds_i > 59:
            return None
        span = dt.timedelta(days=int(days or 0), hours=hours, minutes=minutes_i, seconds=seconds_i,
                            microseconds=int((fraction or "0").ljust(6, "0")[:6]))
    return -span if sign else span


def schedule(expression: str, settings: Mapping[str, str]) -> tuple[str, list[set[int]] | dt.timedelta]:
    """(resolved expression, cron fields or period) for a timer binding's `schedule`."""
    resolved = resolve(expression, settings)
    try:
        return resolved, parse_cron(resolved)
    except ValueError:
        period = parse_timespan(resolved)
        if period is None:
            raise IndexingError(f"The schedule expression '{resolved}' was not recognized as a valid cron "
                                "expression or timespan string.") from None
        return resolved, period


def next_occurrences(fields: list[set[int]], after: dt.datetime, count: int = 5) -> list[dt.datetime]:
    """The next occurrences of a cron schedule (UTC), as the host logs them at start-up."""
    seconds, minutes, hours, days, months, weekdays = fields
    found: list[dt.datetime] = []
    day = after.date()
    while len(found) < count and day.year <= after.year + 5:
        if day.month in months and day.day in days and (day.weekday() + 1) % 7 in weekdays:
            for h in sorted(hours):
                for m in sorted(minutes):
                    for s in sorted(seconds):
                        moment = dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=after.tzinfo)
                        if moment > after and len(found) < count:
                            found.append(moment)
        day += dt.timedelta(days=1)
    return found
