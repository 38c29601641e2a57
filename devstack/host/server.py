"""HTTP/1.1 for the emulated host: Kestrel's limits and answers on the stdlib server.

A listen backlog of 1024 (socketserver's default of 5 reset connections under load), one
thread per connection, functions on the worker's pool (dispatch.py). What Kestrel refuses is
refused the same way, always with a JSON body and never a traceback or a hang: a request line
over 8 KiB (414), a malformed request line, method, target, header or Content-Length (400),
a body over the host's 100 MiB limit (413), a body that stalls (408 after 5 s without a
byte, near Kestrel's minimum data rate), 30 s to send the headers, 130 s keep-alive.
Any method is routed (TRACE, unknown tokens): the router, not the server, answers 404.
"""

from __future__ import annotations

import logging
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.host.dispatch import Host
from devstack.host.kestrel import BadRequest
from devstack.host.messages import Request, Response, error

log = logging.getLogger("devstack.serve")
MAX_REQUEST_LINE = 8 * 1024  # Kestrel MaxRequestLineSize
MAX_BODY = 104_857_600  # the Functions host's MaxRequestBodySize (100 MiB)
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 method token
STATUS_CODES = {400: "bad_request", 408: "request_timeout", 413: "request_too_large", 414: "uri_too_long",
                431: "headers_too_large", 501: "not_implemented", 505: "http_version_not_supported"}


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class HostServer(ThreadingHTTPServer):
    request_queue_size = 1024  # listen backlog; the kernel caps it at net.core.somaxconn
    daemon_threads = True
    block_on_close = False


def make_handler(host: Host, header_timeout: float = 30, body_timeout: float = 5,
                 keep_alive: float = 130) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "devstack-functions"
        timeout = keep_alive

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # our own line omits the query string (it may hold ?code=)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The stdlib's own refusals (request line, headers) as JSON, without echoing the request."""
            self._refuse(code, self.responses.get(code, ("Bad Request",))[0].lower())

        def _refuse(self, status: int, message: str) -> None:
            if self.request_version in ("", "HTTP/0.9"):
                self.request_version = "HTTP/1.0"  # so a status line and headers are written
            self.close_connection = True  # what follows on this connection cannot be trusted
            self._send(error(status, STATUS_CODES.get(status, "bad_request"), message))
            log.info("refused a request: %s %s", status, message)

        def handle_one_request(self) -> None:
            self.connection.settimeout(keep_alive)
            try:
                self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            except (TimeoutError, ConnectionError):
                self.close_connection = True
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            self.connection.settimeout(header_timeout)
            self.requestline, self.request_version, self.command = "", "", ""
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self._refuse(414, "the request line is longer than 8 KiB")
                return
            try:
                if not self.parse_request():
                    return
                if self.request_version == "HTTP/0.9" or not TOKEN.fullmatch(self.command):
                    raise RequestError(400, "malformed request line")
                if self.headers.defects or self.headers.get_payload():
                    raise RequestError(400, "malformed header line")
                if self.request_version == "HTTP/1.1" and len(self.headers.get_all("Host") or []) != 1:
                    raise RequestError(400, "an HTTP/1.1 request needs exactly one Host header")
                self._respond(self._read_request())
            except RequestError as exc:
                self._refuse(exc.status, exc.message)
            except TimeoutError:
                self._refuse(408, "the request was not received in time")
            except ConnectionError:
                self.close_connection = True

        def _read_request(self) -> Request:
            self.connection.settimeout(body_timeout)
            # The target as sent: the stdlib collapses a leading '//' in self.path, Kestrel does not.
            target = self.requestline.split()[1]
            return Request(self.command, target, {k.lower(): v for k, v in reversed(self.headers.items())},
                           self._body(), f"http://{self.headers.get('Host') or 'localhost'}")

        def _body(self) -> bytes:
            lengths = {v.strip() for v in self.headers.get_all("Content-Length") or []}
            encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
            if encoding:
                if lengths:
                    raise RequestError(400, "both Content-Length and Transfer-Encoding are set")
                if not encoding.endswith("chunked"):
                    raise RequestError(400, "the final Transfer-Encoding must be chunked")
                return self._chunked()
            if len(lengths) > 1 or any(not re.fullmatch(r"\d{1,19}", v) or int(v) >= 2**63 for v in lengths):
                raise RequestError(400, "Content-Length must be one non-negative integer")
            length = int(next(iter(lengths), "0"))
            if length > MAX_BODY:
                raise RequestError(413, f"the body is larger than the host's limit of {MAX_BODY} bytes")
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                raise RequestError(400, "unexpected end of request content")
            return body

        def _chunked(self) -> bytes:
            body = bytearray()
            while True:
                line = self.rfile.readline(1026).split(b";", 1)[0].strip()
                if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", line):
                    raise RequestError(400, "malformed chunk size")
                size = int(line, 16)
                if len(body) + size > MAX_BODY:
                    raise RequestError(413, f"the body is larger than the host's limit of {MAX_BODY} bytes")
                if size == 0:
                    while self.rfile.readline(8192).strip():
                        pass  # trailer fields are ignored
                    return bytes(body)
                chunk = self.rfile.read(size)
                if len(chunk) < size or self.rfile.read(2) != b"\r\n":
                    raise RequestError(400, "unexpected end of request content")
                body += chunk

        def _respond(self, request: Request) -> None:
            started = time.perf_counter()
            try:
                response = host.handle(request)
            except BadRequest as exc:
                self.close_connection = True
                response = error(400, "bad_request", str(exc))
            except Exception:
                log.exception("the host failed on %s", request.method)
                response = error(500, "host_error", "the host failed; see its log")
            # Logged before the answer goes out, so a client that got it can find the line.
            log.info("%s %s -> %s (%s, %.0f ms)", self.command, request.target.split("?", 1)[0][:300], response.status,
                     response.function, (time.perf_counter() - started) * 1000)
            self._send(response)

        def _send(self, response: Response) -> None:
            try:
                self.send_response(response.status)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
                self.wfile.flush()
            except (ConnectionError, TimeoutError):
                self.close_connection = True

    return Handler


def make_server(host: Host, address: tuple[str, int], **timeouts: float) -> HostServer:
    return HostServer(address, make_handler(host, **timeouts))
