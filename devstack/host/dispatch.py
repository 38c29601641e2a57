"""The host's request pipeline: route, authorise, invoke on the worker's pool; the admin API.

Order as in the host: Kestrel's path (kestrel.py), then the admin controller's routes, then
the function routes (first match wins; no match is 404 before any key is looked at), then the
key check for the matched function (401), then the invocation. Functions run on a thread pool
sized like the Python worker's (`PYTHON_THREADPOOL_THREAD_COUNT`; unset means Python's
default, min(32, CPUs + 4)), so concurrency beyond it queues instead of piling up.
`POST /admin/functions/<name>` needs the master key and a JSON body (`{"input": ...}`),
answers 202 and runs the function in the background, as the host's `FunctionsController`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func

from devstack.host import kestrel, timers
from devstack.host.keys import HostKeys, presented_key
from devstack.host.messages import Request, Response, error
from devstack.host.metadata import FunctionInfo
from devstack.host.routing import Route, RouteError, RouteTable

log = logging.getLogger("devstack.serve")
ADMIN_ROUTES = [Route("invoke", "admin/functions/{name}", frozenset({"POST"})),
                Route("status", "admin/functions/{name}/status", frozenset({"GET"}))]


def pool_size(settings: Mapping[str, str]) -> int | None:
    """PYTHON_THREADPOOL_THREAD_COUNT as the worker reads it: an integer >= 1, else the default."""
    raw = settings.get("PYTHON_THREADPOOL_THREAD_COUNT")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        log.warning("PYTHON_THREADPOOL_THREAD_COUNT must be an integer >= 1, got %r; using the default", raw)
        return None
    return value


class Host:
    def __init__(self, functions: list[FunctionInfo], keys: HostKeys, prefix: str,
                 settings: Mapping[str, str]):
        self.keys = keys
        self.functions = {f.name.lower(): f for f in functions}
        self.errors: dict[str, list[str]] = {}
        self.schedules: dict[str, tuple[str, Any]] = {}
        routes = []
        for f in functions:
            try:
                if f.is_http:
                    routes.append(Route(f.name, f"{prefix}/{f.route}" if prefix else f.route, f.methods))
                elif f.trigger.get("type") == "timerTrigger":
                    self.schedules[f.name] = timers.schedule(str(f.trigger.get("schedule", "")), settings)
            except (RouteError, timers.IndexingError) as exc:
                self.errors[f.name] = [f"Error indexing method 'Functions.{f.name}'. {exc}"]
        self.routes = RouteTable(routes)
        self.admin = RouteTable(ADMIN_ROUTES)
        self.pool = ThreadPoolExecutor(max_workers=pool_size(settings), thread_name_prefix="worker")

    def startup_report(self) -> None:
        """What the host logs at start: functions in error, each timer's next occurrences."""
        for name, messages in self.errors.items():
            log.error("The '%s' function is in error: %s", name, " ".join(messages))
        now = dt.datetime.now(dt.UTC)
        for name, (expression, parsed) in self.schedules.items():
            if isinstance(parsed, list):
                upcoming = ", ".join(t.strftime("%Y-%m-%d %H:%M:%SZ") for t in timers.next_occurrences(parsed, now))
                log.info("The next 5 occurrences of the '%s' schedule (Cron: '%s') will be: %s", name, expression,
                         upcoming)
            if self.functions[name.lower()].trigger.get("runOnStartup"):
                self.run_in_background(self.functions[name.lower()], "This function was invoked on startup")

    def handle(self, request: Request) -> Response:
        raw_path, raw_query = kestrel.split_target(request.target)
        path = kestrel.request_path(raw_path)
        key = presented_key(request.headers, kestrel.first_query_value(raw_query, "code"))
        admin = self.admin.find(request.method, path)
        if admin is not None:
            if not self.keys.allows("admin", key, None):
                return error(401, "unauthorized", "the admin API needs the master key (x-functions-key or ?code=)")
            route, values = admin
            return self.invoke_admin(values["name"], request) if route.target == "invoke" else \
                self.status(values["name"])
        found = self.routes.find(request.method, path)
        if found is None:
            return error(404, "route_not_found", f"no function route matches {request.method} {path[:200]}")
        route, values = found
        function = self.functions[route.target.lower()]
        if not self.keys.allows(function.auth_level, key, function.name):
            return error(401, "unauthorized", f"function '{function.name}' needs a {function.auth_level}-level "
                         "key (x-functions-key header or ?code=)", function.name)
        query = f"?{raw_query}" if raw_query else ""
        http_request = func.HttpRequest(
            method=request.method, url=request.base_url + kestrel.display_path(path) + query,
            headers=request.headers, params=kestrel.query_params(raw_query), route_params=values,
            body=request.body)
        try:
            result = self.pool.submit(function.user_function, **{function.trigger["name"]: http_request}).result()
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", function.name)
            return error(500, "function_failed", f"function '{function.name}' raised; see the host log",
                         function.name)
        return _http_response(result, function.name)

    def invoke_admin(self, name: str, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.body and not (content_type.endswith("/json") or content_type.endswith("+json")):
            return error(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
        try:
            invocation = json.loads(request.body) if request.body.strip() else None
        except ValueError:
            invocation = None
        if not isinstance(invocation, dict) or not isinstance(invocation.get("input", ""), str | None):
            return error(400, "invalid_body", 'POST /admin/functions/<name> needs a JSON body: {"input": "<string>"}')
        function = self.functions.get(name.lower())
        if function is None or function.name in self.errors:
            reason = " ".join(self.errors.get(function.name, [])) if function else ""
            return error(404, "function_in_error" if reason else "function_not_found",
                         f"function '{name}' is in error: {reason}" if reason else f"no function named '{name}'")
        if function.is_http or function.trigger.get("type") != "timerTrigger":
            return error(404, "function_not_invocable", f"devstack serve invokes only timer functions this way; "
                         f"'{function.name}' has a {function.trigger.get('type')} trigger")
        self.run_in_background(function, "This function was programmatically called via the host APIs.")
        return Response(202, function=function.name)

    def status(self, name: str) -> Response:
        function = self.functions.get(name.lower())
        if function is None:
            return error(404, "function_not_found", f"no function named '{name}'")
        errors = self.errors.get(function.name)
        body = json.dumps({"errors": errors} if errors else {}).encode()
        return Response(200, {"Content-Type": "application/json; charset=utf-8"}, body, function.name)

    def run_in_background(self, function: FunctionInfo, reason: str) -> None:
        invocation = str(uuid.uuid4())

        def run() -> None:
            started = time.perf_counter()
            log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation)
            try:
                # The concrete class: func.TimerRequest is abstract.
                function.user_function(**{function.trigger["name"]: func.timer.TimerRequest(past_due=False)})
                outcome = "Succeeded"
            except Exception:
                log.exception("Function 'Functions.%s' raised (Id=%s)", function.name, invocation)
                outcome = "Failed"
            log.info("Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms)", function.name, outcome, invocation,
                     (time.perf_counter() - started) * 1000)

        self.pool.submit(run)


def _http_response(result: Any, name: str) -> Response:
    """The worker's conversion of a function's return value into the HTTP response."""
    if isinstance(result, str | bytes):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        log.error("function '%s' returned %s, not an HttpResponse", name, type(result).__name__)
        return error(500, "function_failed", f"function '{name}' returned no HTTP response", name)
    headers = dict(result.headers)
    if result.mimetype and "content-type" not in {k.lower() for k in headers}:
        charset = f"; charset={result.charset}" if result.charset else ""
        headers["Content-Type"] = f"{result.mimetype}{charset}"
    return Response(result.status_code, headers, result.get_body() or b"", name)
