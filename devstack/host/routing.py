"""ASP.NET Core route templates, matched the way the Functions host's `WebJobsRouter` does.

The host maps each HTTP function to a legacy ASP.NET Core `Route` (template = route prefix +
route, an `HttpMethodRouteConstraint` when methods are listed) in one `RouteCollection`, and
the first route that matches wins. Copied from `RoutePatternMatcher`/`PathTokenizer`:
literals compare case-insensitively; a trailing `/` is ignored; an empty segment matches
nothing; a catch-all takes the rest of the path as is (trailing `/` included) and matches
empty (no value then); a method outside the constraint is no match at all (so 404, not 405).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

_PARAMETER = re.compile(
    r"\{(?P<star>\*{1,2})?(?P<name>[^{}/:?=*]+)(?P<constraints>(?::[^:{}?=()]+(?:\([^)]*\))?)*)"
    r"(?:(?P<optional>\?)|=(?P<default>[^{}]*))?\}")


class RouteError(ValueError):
    """A route template devstack cannot serve; the function is put in error, like the host does."""


def _int_between(low: int, high: int) -> Callable[[str], bool]:
    return lambda v: bool(re.fullmatch(r"\s*[+-]?\d+\s*", v)) and low <= int(v) <= high


def _number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _guid(v: str) -> bool:
    try:
        uuid.UUID(v.strip("{}()"))
    except ValueError:
        return False
    return True


# The inline constraints of ASP.NET Core routing (DefaultInlineConstraintResolver), by name.
CONSTRAINTS: dict[str, Callable[..., Callable[[str], bool]]] = {
    "int": lambda: _int_between(-2**31, 2**31 - 1),
    "long": lambda: _int_between(-2**63, 2**63 - 1),
    "bool": lambda: lambda v: v.lower() in ("true", "false"),
    "alpha": lambda: lambda v: bool(re.fullmatch(r"[A-Za-z]*", v)),
    "guid": lambda: _guid,
    "double": lambda: _number, "float": lambda: _number, "decimal": lambda: _number,
    "minlength": lambda n: lambda v: len(v) >= int(n),
    "maxlength": lambda n: lambda v: len(v) <= int(n),
    "length": lambda a, b=None: (lambda v: len(v) == int(a)) if b is None else
    (lambda v: int(a) <= len(v) <= int(b)),
    "min": lambda n: lambda v: _int_between(int(n), 2**63)(v),
    "max": lambda n: lambda v: _int_between(-2**63, int(n))(v),
    "range": lambda a, b: _int_between(int(a), int(b)),
    "regex": lambda expr: lambda v: re.search(expr, v, re.IGNORECASE) is not None,
}


@dataclass(frozen=True)
class Segment:
    literal: str | None = None
    name: str | None = None
    catch_all: bool = False
    optional: bool = False
    default: str | None = None
    checks: tuple[Callable[[str], bool], ...] = ()


def _constraint(text: str) -> Callable[[str], bool]:
    name, _, args = text.partition("(")
    factory = CONSTRAINTS.get(name.lower())
    if factory is None:
        raise RouteError(f"route constraint '{name}' is not supported by devstack serve")
    values = [a.strip() for a in args.rstrip(")").split(",")] if args and name.lower() != "regex" else \
        ([args[:-1]] if args else [])
    try:
        return factory(*values)
    except (TypeError, ValueError, re.error) as exc:
        raise RouteError(f"route constraint '{text}' is malformed: {exc}") from None


def parse_template(template: str) -> list[Segment]:
    """A route template (`api/objects/{source}/{*key}`) as segments; complex segments refused."""
    segments = []
    parts = template.removeprefix("~/").removeprefix("/").split("/") if template.strip("/~") else []
    for index, text in enumerate(parts):
        if not text:
            raise RouteError(f"route '{template}': the separator '/' cannot appear consecutively")
        match = _PARAMETER.fullmatch(text)
        if match is None:
            if "{" in text or "}" in text:
                raise RouteError(f"route '{template}': segment '{text}' mixes literals and parameters, "
                                 "which devstack serve does not support")
            segments.append(Segment(literal=text))
            continue
        star = bool(match["star"])
        if star and (index != len(parts) - 1 or match["optional"]):
            raise RouteError(f"route '{template}': a catch-all must be the last segment and not optional")
        checks = tuple(_constraint(c) for c in re.findall(r":([^:]+(?:\([^)]*\))?)", match["constraints"]))
        segments.append(Segment(name=match["name"], catch_all=star, optional=bool(match["optional"]),
                                default=match["default"], checks=checks))
    return segments


def tokens(path: str) -> Iterator[tuple[int, str]]:
    """`PathTokenizer`: (offset, text) of each segment; a trailing '/' yields no empty segment."""
    index = 1
    while len(path) > 1 and index < len(path):
        end = path.find("/", index)
        if end == -1:
            yield index, path[index:]
            return
        yield index, path[index:end]
        index = end + 1


def _same(a: str, b: str) -> bool:
    """StringComparison.OrdinalIgnoreCase: per-character simple upper-casing."""
    return len(a) == len(b) and all(x == y or x.upper() == y.upper() for x, y in zip(a, b, strict=True))


def match(template: list[Segment], path: str) -> dict[str, str | None] | None:
    """`RoutePatternMatcher.TryMatch` plus the inline constraints: route values, or None."""
    values: dict[str, str | None] = {}
    found = list(tokens(path))
    for index, (offset, text) in enumerate(found):
        if not text or index >= len(template):
            return None
        segment = template[index]
        if segment.catch_all:
            values[segment.name] = path[offset:] or segment.default  # type: ignore[index]
            break
        if segment.literal is not None and not _same(text, segment.literal):
            return None
        if segment.name is not None:
            values[segment.name] = text
    else:
        for segment in template[len(found):]:
            if segment.literal is not None:
                return None
            if not (segment.catch_all or segment.optional or segment.default is not None):
                return None
            values[segment.name] = segment.default  # type: ignore[index]
            if segment.catch_all:
                break
    for segment in template:
        value = values.get(segment.name) if segment.name else None
        if value is not None and not all(check(value) for check in segment.checks):
            return None
    return values


@dataclass
class Route:
    target: str  # the function (or admin action) the route leads to
    template: str
    methods: frozenset[str] | None  # None: any method (no HttpMethodRouteConstraint)
    segments: list[Segment] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.segments = parse_template(self.template)


class RouteTable:
    """A `RouteCollection`: routes tried in the order they were added; the first match wins."""

    def __init__(self, routes: list[Route]):
        self.routes = routes

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.methods is not None and method.upper() not in route.methods:
                continue  # HttpMethodRouteConstraint (OrdinalIgnoreCase): not this route
            values = match(route.segments, path)
            if values is not None:
                # Values that matched nothing (an empty catch-all) never reach the worker.
                return route, {k: v for k, v in values.items() if v is not None}
        return None
