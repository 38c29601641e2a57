"""devstack/host/kestrel.py: the request target as Kestrel and the Functions host hand it on."""

from __future__ import annotations

import pytest

from devstack.host import kestrel


@pytest.mark.parametrize(("raw", "path"), [
    ("/api/objects/azure/a%2Fb", "/api/objects/azure/a%2Fb"),  # %2F never decoded
    ("/api/objects/azure/a%2fb", "/api/objects/azure/a%2fb"),
    ("/x%C3%A9%20y", "/xé y"),  # UTF-8 escapes decoded
    ("/%FF", "/%FF"), ("/%E2%28", "/%E2("), ("/%C0%AF", "/%C0%AF"),  # invalid UTF-8 kept literally
    ("/%ED%A0%80", "/%ED%A0%80"), ("/a%zz", "/a%zz"), ("/a%2", "/a%2"),
    ("/a%25b", "/a%b"),
])
def test_kestrel_url_decoder_decodes_utf8_escapes_except_the_slash(raw, path):
    """Kestrel UrlDecoder.DecodeInPlace: SkipUnescape(%2F); undecodable sequences copied as is."""
    assert kestrel.request_path(raw) == path


@pytest.mark.parametrize(("raw", "path"), [
    ("/k/../b", "/b"), ("/a/%2e%2e/b", "/b"), ("/a/%2E%2E/./b", "/b"), ("/a/./b/.", "/a/b/"),
    ("/..", "/"), ("/a/..", "/"), ("/../../x", "/x"), ("/a//../b", "/a/b"), ("/a/...", "/a/..."),
    ("/a%2f..", "/a%2f.."), ("/a/.b/..c", "/a/.b/..c"),
])
def test_kestrel_removes_dot_segments_after_decoding(raw, path):
    """Kestrel PathNormalizer.RemoveDotSegments (RFC 3986 5.2.4), applied to the decoded path."""
    assert kestrel.request_path(raw) == path


def test_kestrel_refuses_a_nul_in_the_path():
    with pytest.raises(kestrel.BadRequest, match="null"):
        kestrel.request_path("/a%00b")


@pytest.mark.parametrize("target", ["/a b", "/a#b", "/caf\u00e9", "/a\x01", "*", "api/health"])
def test_request_targets_kestrel_refuses(target):
    with pytest.raises(kestrel.BadRequest):
        kestrel.split_target(target)


def test_absolute_form_targets_are_reduced_to_path_and_query():
    assert kestrel.split_target("http://host:7071/api/health?x=1") == ("/api/health", "x=1")
    assert kestrel.split_target("http://host?x=1") == ("/", "x=1")


def test_query_as_the_host_hands_it_to_the_worker():
    """ASP.NET Core QueryCollection (case-insensitive names, '+' is a space) and the host's ToRpcHttp
    (values of one name joined with ',', empty values dropped)."""
    assert kestrel.query_params("a=1&A=2&b=&c+d=e%20f&e=%FF&flag") == {"a": "1,2", "c d": "e f", "e": "%FF"}


def test_code_is_the_first_value_of_a_case_insensitive_name():
    assert kestrel.first_query_value("CODE=k1&code=k2", "code") == "k1"
    assert kestrel.first_query_value("code=&x=1", "code") == ""
    assert kestrel.first_query_value("x=1", "code") is None


def test_display_path_is_path_string_to_uri_component():
    assert kestrel.display_path("/api/objects/a%2Fb/é x") == "/api/objects/a%2Fb/%C3%A9%20x"
