"""A loopback reverse proxy in front of one local-cloud endpoint that injects faults on cue.

Requests pass through unchanged (Host header included, so SigV4 signatures still verify)
unless `plan(method, path)` returns a fault for them: an HTTP answer (status, headers, body:
throttling, 5xx) or "reset" (the connection is reset before any answer). HTTPS when given
the devstack server certificate (Azurite's side), plain HTTP otherwise (moto's side).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Fault = tuple[int, dict[str, str], bytes] | str | None
Plan = Callable[[str, str], Fault]


class FaultProxy:
    def __init__(self, upstream: str, plan: Plan, *, cert: tuple[str, str] | None = None,
                 ca_file: str | None = None):
        self.upstream = urlsplit(upstream)
        self.plan = plan
        self.seen: list[tuple[str, str, int | str, float]] = []  # (method, path, status or "reset", when)
        self._ca_file = ca_file
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy.plan(self.command, self.path)
                if fault == "reset":
                    proxy.seen.append((self.command, self.path, "reset", time.monotonic()))
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault is not None:
                    status, headers, payload = fault  # type: ignore[misc]
                else:
                    status, headers, payload = proxy.forward(self.command, self.path, dict(self.headers), body)
                proxy.seen.append((self.command, self.path, status, time.monotonic()))
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                length = {k.lower(): v for k, v in headers.items()}.get("content-length", "0") \
                    if self.command == "HEAD" else str(len(payload))  # a HEAD tells the object's size
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def forward(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, dict[str, str], bytes]:
        host, port = self.upstream.hostname, self.upstream.port
        if self.upstream.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=30, context=ssl.create_default_context(cafile=self._ca_file))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def first(count: int, fault: Fault, method: str, contains: str = "") -> Plan:
    """A plan: `fault` for the first `count` requests with `method` whose path contains `contains`."""
    left = [count]
    lock = threading.Lock()

    def plan(m: str, path: str) -> Fault:
        if m != method or contains not in path:
            return None
        with lock:
            if left[0] <= 0:
                return None
            left[0] -= 1
        return fault

    return plan
