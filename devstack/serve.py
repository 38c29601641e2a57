"""`python -m devstack serve`: run function_app over HTTP the way `func start` does.

For machines without Azure Functions Core Tools. It reads the app's functions from the
`FunctionApp` object itself (routes, methods, auth levels, binding names), applies the
route prefix from host.json, checks keys like the host (`x-functions-key` header or
`?code=`; function level accepts the function or master key, admin level the master key
only), and runs non-HTTP functions on `POST /admin/functions/<name>`.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import azure.functions as func

from devstack import config, envfile

log = logging.getLogger("devstack.serve")


@dataclass
class HttpFunction:
    name: str
    pattern: re.Pattern[str]
    methods: set[str]
    auth_level: str
    param: str
    fn: Any


def compile_route(template: str) -> re.Pattern[str]:
    """A Functions route template (`objects/{source}/{*key}`, `{id:int}`, `{x?}`) as a regex."""
    out, pos = [], 0
    for match in re.finditer(r"\{(\*?)([A-Za-z_]\w*)(?::[^}?]+)?(\??)\}", template):
        literal = template[pos:match.start()]
        star, name, optional = match.groups()
        group = f"(?P<{name}>{'.*' if star else '[^/]+'})"
        if (optional or star) and literal.endswith("/"):  # the host: a catch-all also matches empty
            out.append(re.escape(literal[:-1]) + f"(?:/{group})?")
        else:
            out.append(re.escape(literal) + group + ("?" if optional else ""))
        pos = match.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def load_app(module: str = "function_app") -> tuple[list[HttpFunction], dict[str, tuple[Any, str]]]:
    app = importlib.import_module(module).app
    prefix = route_prefix()
    http: list[HttpFunction] = []
    other: dict[str, tuple[Any, str]] = {}
    for function in app.get_functions():
        trigger = function.get_trigger()
        name = function.get_function_name()
        if type(trigger).__name__ == "HttpTrigger":
            route = trigger.route or name
            full = f"{prefix}/{route}".strip("/") if prefix else route
            methods = {str(getattr(m, "value", m)).upper() for m in (trigger.methods or [])} or \
                {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
            level = str(getattr(trigger.auth_level, "value", trigger.auth_level) or "function").lower()
            http.append(HttpFunction(name, compile_route(full), methods, level, trigger.name,
                                     function.get_user_function()))
        else:
            other[name.lower()] = (function.get_user_function(), trigger.name)
    # Literal routes before templates, as the host's router prefers the more specific one.
    http.sort(key=lambda f: f.pattern.pattern.count("(?P"))
    return http, other


def route_prefix() -> str:
    host = json.loads((config.REPO_ROOT / "host.json").read_text())
    return host.get("extensions", {}).get("http", {}).get("routePrefix", "api").strip("/")


class Host:
    def __init__(self, function_key: str, master_key: str, module: str = "function_app"):
        self.function_key = function_key
        self.master_key = master_key
        self.http, self.other = load_app(module)

    def authorized(self, level: str, presented: str | None) -> bool:
        if level == "anonymous":
            return True
        if not presented:
            return False
        if level == "admin":
            return presented == self.master_key
        return presented in (self.function_key, self.master_key)

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes,
                 base_url: str) -> tuple[int, dict[str, str], bytes, str]:
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = unquote(parts.path, encoding="utf-8", errors="strict").lstrip("/")
        presented = headers.get("x-functions-key") or query.get("code")
        admin = re.fullmatch(r"admin/functions/([\w-]+)", path)
        if admin and method == "POST":
            if not presented or presented != self.master_key:
                return 401, {}, b"", "admin"
            target = self.other.get(admin.group(1).lower())
            if target is None:
                return 404, {}, b"", "admin"
            fn, param = target
            fn(**{param: func.timer.TimerRequest(past_due=False)})  # the concrete class; func.TimerRequest is abstract
            return 202, {}, b"", admin.group(1)
        for function in self.http:
            match = function.pattern.fullmatch(path)
            if not match:
                continue
            if method not in function.methods:
                return 405, {}, b"", function.name
            if not self.authorized(function.auth_level, presented):
                return 401, {}, b"", function.name
            request = func.HttpRequest(
                method=method, url=base_url + raw_path, headers=headers, params=query,
                route_params={k: v for k, v in match.groupdict().items() if v is not None},
                body=body)
            response = function.fn(**{function.param: request})
            out_headers = dict(response.headers)
            if response.mimetype and "content-type" not in {k.lower() for k in out_headers}:
                charset = f"; charset={response.charset}" if response.charset else ""
                out_headers["Content-Type"] = f"{response.mimetype}{charset}"
            return response.status_code, out_headers, response.get_body() or b"", function.name
        return 404, {}, b"", "-"


def make_handler(host: Host) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "devstack-functions"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # our own line below omits the query string (it may hold ?code=)

        def _handle(self) -> None:
            started = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            base = f"http://{self.headers.get('Host', 'localhost')}"
            try:
                status, out_headers, data, name = host.dispatch(self.command, self.path, headers, body, base)
            except UnicodeDecodeError:
                status, out_headers, data, name = 400, {}, b"", "-"
            except Exception:
                log.exception("function raised")
                status, out_headers, data, name = 500, {}, b"", "-"
            self.send_response(status)
            for key, value in out_headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            log.info("%s %s -> %s (%s, %.0f ms)", self.command, self.path.split("?", 1)[0], status,
                     name, (time.perf_counter() - started) * 1000)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    return Handler


def main(port: int | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        values = envfile.apply()
    except FileNotFoundError as exc:
        print(f"devstack serve: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(config.REPO_ROOT))
    host = Host(values["DEVSTACK_FUNCTION_KEY"], values["DEVSTACK_MASTER_KEY"])
    port = port or config.Ports.from_env().functions
    try:
        server = ThreadingHTTPServer((config.HOST, port), make_handler(host))
    except OSError as exc:
        print(f"devstack serve: cannot listen on {config.HOST}:{port} ({exc.strerror}); is another "
              "host running? Stop it or pass --port.", file=sys.stderr)
        return 2
    server.daemon_threads = True
    names = ", ".join(f.name for f in host.http)
    print(f"Functions: {names}; serving on http://{config.HOST}:{port}/{route_prefix()}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
