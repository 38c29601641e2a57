"""devstack/host/routing.py: ASP.NET Core route templates as the Functions host matches them."""

from __future__ import annotations

import pytest

from devstack.host.routing import Route, RouteError, RouteTable, match, parse_template


def _match(template: str, path: str) -> dict | None:
    return match(parse_template(template), path)


def test_literals_match_ordinal_ignore_case():
    """RoutePatternMatcher.TryMatchLiterals: StringComparison.OrdinalIgnoreCase."""
    assert _match("api/health", "/API/Health") == {}
    assert _match("api/health", "/api/healthz") is None


def test_a_trailing_slash_is_ignored_but_empty_segments_never_match():
    """PathTokenizer drops one trailing '/'; RoutePatternMatcher refuses an empty segment."""
    assert _match("api/health", "/api/health/") == {}
    assert _match("api/health", "/api//health") is None
    assert _match("api/health", "/api/health//") is None


def test_a_catch_all_takes_the_rest_as_is_and_matches_empty():
    """RoutePatternMatcher: a catch-all captures to the end of the path (trailing '/' included)
    and can match the empty string, leaving no value."""
    template = "api/objects/{source}/{*key}"
    assert _match(template, "/api/objects/azure/a/b//c/") == {"source": "azure", "key": "a/b//c/"}
    assert _match(template, "/api/objects/azure") == {"source": "azure", "key": None}
    assert _match(template, "/api/objects/azure/") == {"source": "azure", "key": None}
    assert _match(template, "/api/objects") is None  # {source} is required
    assert _match(template, "/api/objects/azure//x") is None  # empty segment before the catch-all


def test_optional_parameters_defaults_and_constraints():
    assert _match("items/{id:int?}", "/items") == {"id": None}
    assert _match("items/{id:int?}", "/items/42") == {"id": "42"}
    assert _match("items/{id:int?}", "/items/x") is None
    assert _match("items/{kind=all}", "/items") == {"kind": "all"}
    assert _match("items/{id:int:range(1,5)}", "/items/9") is None
    assert _match("items/{name:alpha:minlength(2)}", "/items/ab") == {"name": "ab"}


@pytest.mark.parametrize("template", ["a//b", "a/{x}.{y}", "a/{*rest}/b", "a/{id:nosuch}", "a/x{y}"])
def test_templates_devstack_cannot_serve_are_refused_at_start(template):
    with pytest.raises(RouteError):
        parse_template(template)


def test_methods_are_a_route_constraint_and_the_first_match_wins():
    """The host's HttpMethodRouteConstraint (OrdinalIgnoreCase) in a RouteCollection: a route whose
    method does not fit is skipped, so another route may match and none at all is a 404."""
    table = RouteTable([Route("get_one", "api/things/{id}", frozenset({"GET"})),
                        Route("any_thing", "api/things/{name}", None),
                        Route("post_only", "api/other", frozenset({"POST"}))])
    assert table.find("GET", "/api/things/1")[0].target == "get_one"
    assert table.find("get", "/api/things/1")[0].target == "get_one"
    assert table.find("DELETE", "/api/things/1")[0].target == "any_thing"
    assert table.find("HEAD", "/api/other") is None
    assert table.find("GET", "/api/other") is None


def test_null_route_values_never_reach_the_function():
    """The host's PopulateHttpRouteDataAsParams skips null values."""
    table = RouteTable([Route("get_object", "api/objects/{source}/{*key}", frozenset({"GET"}))])
    assert table.find("GET", "/api/objects/azure")[1] == {"source": "azure"}
