"""function_app's metadata, as the azure-functions library builds it for the worker and the host.

`devstack serve` routes from exactly this (devstack/host/metadata.py), so the test pins both the
library's output and the table serve builds from it. If the library's public metadata methods
(`get_functions`, `get_function_name`, `get_raw_bindings`, `get_user_function`) change, this
fails naming them.
"""

from __future__ import annotations

import importlib
import json

import azure.functions as func
import pytest
from azure.functions.decorators.function_app import Function

import function_app
from devstack.host import metadata
from devstack.host.dispatch import Host
from devstack.host.keys import HostKeys


@pytest.fixture(autouse=True)
def fresh_app():
    """A fresh FunctionApp per test: get_functions() records the names it has seen, so the library
    (like the worker) indexes an app once."""
    importlib.reload(function_app)


EXPECTED = {
    "health": {"type": "httpTrigger", "route": "health", "methods": ["GET"], "authLevel": "ANONYMOUS"},
    "list_objects": {"type": "httpTrigger", "route": "objects", "methods": ["GET"], "authLevel": "FUNCTION"},
    "get_object": {"type": "httpTrigger", "route": "objects/{source}/{*key}", "methods": ["GET"],
                   "authLevel": "FUNCTION"},
    "diagnostics": {"type": "httpTrigger", "route": "diagnostics", "methods": ["GET"], "authLevel": "ADMIN"},
    "backup_timer": {"type": "timerTrigger", "schedule": "%BACKUP_SCHEDULE%", "runOnStartup": False,
                     "useMonitor": True},
    "backup_now": {"type": "httpTrigger", "route": "backup", "methods": ["POST"], "authLevel": "ADMIN"},
    "backup_shard": {"type": "queueTrigger", "queueName": "%BACKUP_QUEUE_NAME%", "connection": "CROSSCLOUD_QUEUE"},
    "backup_shard_poison": {"type": "queueTrigger", "queueName": "%BACKUP_QUEUE_NAME%-poison",
                            "connection": "CROSSCLOUD_QUEUE"},
    "restore_now": {"type": "httpTrigger", "route": "restore", "methods": ["POST"], "authLevel": "ADMIN"},
}


def test_the_library_s_raw_bindings_for_function_app():
    """What the worker sends the host (loader.process_indexed_function: get_raw_bindings())."""
    for name in ("get_functions", "get_function_name", "get_raw_bindings", "get_user_function"):
        assert hasattr(func.FunctionApp, name) or hasattr(Function, name), \
            f"azure-functions no longer has {name}(), which devstack serve's indexing uses"
    functions = {f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()]
                 for f in function_app.app.get_functions()}
    assert set(functions) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        trigger = next(b for b in functions[name] if b["type"].endswith("Trigger"))
        assert {k: trigger.get(k) for k in expected} == expected, name
        assert trigger["direction"] == "IN"


def test_serve_indexes_the_app_from_that_metadata():
    indexed = metadata.index("function_app")
    assert [f.name for f in indexed] == list(EXPECTED)  # registration order, as the host maps routes
    host = Host(indexed, HostKeys("m", "h", {}), "api", {"BACKUP_SCHEDULE": "0 0 2 * * *"})
    table = {r.target: (r.template, r.methods) for r in host.routes.routes}
    assert table == {
        "health": ("api/health", frozenset({"GET"})), "list_objects": ("api/objects", frozenset({"GET"})),
        "get_object": ("api/objects/{source}/{*key}", frozenset({"GET"})),
        "diagnostics": ("api/diagnostics", frozenset({"GET"})), "backup_now": ("api/backup", frozenset({"POST"})),
        "restore_now": ("api/restore", frozenset({"POST"})),
    }
    assert {f.name: f.auth_level for f in indexed if f.is_http} == {
        "health": "anonymous", "list_objects": "function", "get_object": "function", "diagnostics": "admin",
        "backup_now": "admin", "restore_now": "admin"}
    assert host.schedules["backup_timer"][0] == "0 0 2 * * *"
    assert host.errors == {}


def test_the_worker_refuses_a_script_with_two_apps():
    """loader.index_function_app: more than one FunctionRegister at top level is an error."""
    import types

    module = types.ModuleType("two_apps")
    module.a, module.b = func.FunctionApp(), func.FunctionApp()
    with pytest.raises(ValueError, match="More than one"):
        metadata.find_app(module)
