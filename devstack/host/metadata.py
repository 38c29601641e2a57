"""Index function_app as the Python worker does and keep what the host receives: raw bindings.

The worker (`loader.index_function_app`) imports the script, takes its single
`FunctionRegister` instance, calls `app.get_functions()`, and sends the host each function's
name and `get_raw_bindings()` (JSON strings). The host builds routes, auth levels and timer
schedules from those JSON bindings alone, so serve does the same: no second description of
the functions exists anywhere in devstack.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import azure.functions as func

ALL_METHODS = None  # an httpTrigger without `methods` accepts every method


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    bindings: tuple[dict[str, Any], ...]
    user_function: Callable[..., Any]

    @property
    def trigger(self) -> dict[str, Any]:
        """The trigger binding: the host takes the one whose type ends with 'Trigger'."""
        return next(b for b in self.bindings if str(b.get("type", "")).lower().endswith("trigger"))

    @property
    def is_http(self) -> bool:
        return str(self.trigger.get("type", "")).lower() == "httptrigger"

    @property
    def route(self) -> str:
        return self.trigger.get("route") or self.name

    @property
    def methods(self) -> frozenset[str] | None:
        methods = self.trigger.get("methods")
        return frozenset(str(m).upper() for m in methods) if methods else ALL_METHODS

    @property
    def auth_level(self) -> str:
        return str(self.trigger.get("authLevel") or "function").lower()


def find_app(module: ModuleType) -> func.FunctionRegister:
    """The module's one `FunctionRegister` (FunctionApp), or the worker's errors."""
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) > 1:
        raise ValueError(f"More than one {type(apps[0]).__name__} or other top level function app "
                         "instances are defined.")
    if not apps:
        raise ValueError(f"Could not find top level function app instances in {module.__name__}.py.")
    return apps[0]


def index(module_name: str = "function_app") -> list[FunctionInfo]:
    """The app's functions in registration order, each with the raw bindings the host receives."""
    app = find_app(importlib.import_module(module_name))
    return [FunctionInfo(f.get_function_name(), tuple(json.loads(raw) for raw in f.get_raw_bindings()),
                         f.get_user_function())
            for f in app.get_functions()]


def route_prefix(host_json: dict[str, Any]) -> str:
    """`extensions.http.routePrefix` from host.json; the host's default is `api`."""
    prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")
