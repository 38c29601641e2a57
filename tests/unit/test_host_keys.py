"""devstack/host/keys.py: master, host and per-function keys, and the levels they grant."""

from __future__ import annotations

import pytest

from devstack.host import keys


def _keys() -> keys.HostKeys:
    return keys.HostKeys(master="m", host="h", functions={"list_objects": "f1", "get_object": "f2"})


@pytest.mark.parametrize(("presented", "function", "level"), [
    ("m", "list_objects", "admin"), ("h", "list_objects", "function"), ("f1", "list_objects", "function"),
    ("f2", "list_objects", "anonymous"), ("f1", "LIST_OBJECTS", "function"), ("nope", "list_objects", "anonymous"),
    (None, "list_objects", "anonymous"), ("", "list_objects", "anonymous"), ("f1", None, "anonymous"),
])
def test_the_level_a_key_grants(presented, function, level):
    """Host secret manager: master -> admin; host keys -> function for all; a function's key -> its own."""
    assert _keys().level(presented, function) == level


def test_auth_levels_as_the_host_applies_them():
    k = _keys()
    assert k.allows("anonymous", None, "health")
    assert k.allows("function", "m", "list_objects")
    assert not k.allows("admin", "h", "diagnostics")
    assert not k.allows("admin", "f1", "list_objects")
    assert k.allows("admin", "m", None)


def test_missing_keys_are_created_and_the_older_name_is_kept():
    loaded, added = keys.load({"DEVSTACK_MASTER_KEY": "m", "DEVSTACK_FUNCTION_KEY": "old"}, ["health", "get-thing"])
    assert loaded.host == "old"  # DEVSTACK_FUNCTION_KEY is the host key's older name
    assert set(added) == {"DEVSTACK_FUNCTION_KEY_HEALTH", "DEVSTACK_FUNCTION_KEY_GET_THING", "DEVSTACK_HOST_KEY"}
    assert added["DEVSTACK_HOST_KEY"] == "old"
    assert loaded.functions["get-thing"] == added["DEVSTACK_FUNCTION_KEY_GET_THING"]
    again, more = keys.load({"DEVSTACK_MASTER_KEY": "m", "DEVSTACK_HOST_KEY": "h", "DEVSTACK_FUNCTION_KEY": "h",
                             **added}, ["health", "get-thing"])
    assert more == {}
    assert again.functions == loaded.functions


def test_a_fresh_file_gets_every_key():
    loaded, added = keys.load({}, ["health"])
    assert added["DEVSTACK_HOST_KEY"] == added["DEVSTACK_FUNCTION_KEY"] == loaded.host
    assert added["DEVSTACK_MASTER_KEY"] == loaded.master != loaded.host


def test_two_functions_that_would_share_a_key_setting_are_refused():
    with pytest.raises(ValueError, match="share"):
        keys.load({}, ["a-b", "a_b"])


def test_the_header_key_takes_precedence_over_code():
    """AuthenticationLevelHandler: the x-functions-key header, else the first `code` value."""
    assert keys.presented_key({"x-functions-key": "h"}, "q") == "h"
    assert keys.presented_key({"x-functions-key": ""}, "q") == ""
    assert keys.presented_key({}, "q") == "q"
