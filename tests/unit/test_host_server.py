"""devstack/host/server.py and dispatch.py in-process, with a small app of their own (no cloud).

Malformed requests are answered the way Kestrel answers them (400/408/413/414), always with a
JSON body, the connection closed, no traceback and no hang.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import azure.functions as func
import pytest

from devstack.host import metadata, server
from devstack.host.dispatch import Host, pool_size
from devstack.host.keys import HostKeys

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
release = threading.Event()
ran = threading.Event()


@app.route(route="echo/{*rest}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"method": req.method, "route": dict(req.route_params), "url": req.url,
                                         "params": dict(req.params), "body": req.get_body().decode()}),
                             mimetype="application/json")


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail")


@app.timer_trigger(arg_name="timer", schedule="%SCHED%", run_on_startup=False)
def slow_timer(timer: func.TimerRequest) -> None:
    ran.set()
    release.wait(10)


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    host = Host(metadata.index(__name__), HostKeys("master", "hostkey", {}), "api", {"SCHED": "0 */5 * * * *"})
    httpd = server.make_server(host, ("127.0.0.1", 0), body_timeout=0.5, header_timeout=1)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address
    httpd.shutdown()
    httpd.server_close()


def exchange(address: tuple[str, int], data: bytes, wait: float = 5) -> tuple[int, dict[str, str], bytes, bool]:
    """Send raw bytes; (status, headers, body, whether the server closed the connection)."""
    with socket.create_connection(address, timeout=wait) as sock:
        sock.sendall(data.removesuffix(b"<EOF>"))
        if data.endswith(b"<EOF>"):
            sock.shutdown(socket.SHUT_WR)  # the client stops sending: "unexpected end of request content"
        raw = b""
        closed = False
        try:
            while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < _length(raw):
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                raw += chunk
            if not closed:
                sock.settimeout(0.3)
                closed = sock.recv(1) == b""
        except TimeoutError:
            pass
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body, closed


def _length(raw: bytes) -> int:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


@pytest.mark.parametrize("data", [
    b"GET /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
    b"GET /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    b"GET /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"GET /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    b"POST /api/echo/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /api/echo/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc<EOF>",
    b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/1.1 extra\r\n\r\n", b"G(T /api/echo/x HTTP/1.1\r\n\r\n",
    b"GET /api/echo/x HTTP/1.1\r\nHost: h\r\nNo colon here\r\n\r\n",
    b"GET /api/echo/a b HTTP/1.1\r\nHost: h\r\n\r\n", b"GET /api/echo/%00 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /api/echo/caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", b"GET /api/echo/x HTTP/1.1\r\n\r\n",
    b"GET /api/echo/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
])
def test_malformed_requests_are_400_with_a_json_body_and_a_closed_connection(address, data, capfd):
    """Kestrel answers a request it cannot parse with 400 and closes the connection."""
    status, headers, body, closed = exchange(address, data)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert closed
    assert "Traceback" not in capfd.readouterr().err


def test_a_body_above_the_host_limit_is_413_and_a_long_request_line_414(address):
    """The Functions host's MaxRequestBodySize (100 MiB); Kestrel's MaxRequestLineSize (8 KiB)."""
    status, _, body, _ = exchange(address, b"POST /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 104857601\r\n\r\n")
    assert (status, json.loads(body)["error"]["code"]) == (413, "request_too_large")
    status, _, body, _ = exchange(address, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, json.loads(body)["error"]["code"]) == (414, "uri_too_long")


def test_a_stalled_body_is_408_not_a_hang(address):
    """Kestrel's minimum request body data rate: a body that stops arriving is a 408."""
    started = time.monotonic()
    stalled = b"POST /api/echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"
    status, _, body, closed = exchange(address, stalled)
    assert (status, json.loads(body)["error"]["code"], closed) == (408, "request_timeout", True)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("method", ["HEAD", "TRACE", "OPTIONS", "DELETE", "FOO"])
def test_any_method_is_routed_and_one_outside_the_route_is_404(address, method):
    status, headers, body, _ = exchange(address, f"{method} /api/echo/x HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    if method != "HEAD":
        assert json.loads(body)["error"]["code"] == "route_not_found"


def test_chunked_bodies_keep_alive_and_what_the_function_receives(address):
    request = (b"POST /API/echo/a%2Fb/../c/%C3%A9?x=1&X=2&y= HTTP/1.1\r\nHost: h:1\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    with socket.create_connection(address, timeout=5) as sock:
        for _ in range(2):  # two requests on one connection
            sock.sendall(request)
            raw = b""
            while b"}" not in raw:
                raw += sock.recv(65536)
            seen = json.loads(raw.split(b"\r\n\r\n", 1)[1])
            assert seen == {"method": "POST", "route": {"rest": "c/é"}, "body": "abcde", "params": {"x": "1,2"},
                            "url": "http://h:1/API/echo/c/%C3%A9?x=1&X=2&y="}


def test_a_function_that_raises_is_a_500_with_json_and_no_detail(address, caplog):
    status, _, body, _ = exchange(address, b"GET /api/boom HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 500
    assert json.loads(body)["error"]["code"] == "function_failed"
    assert b"secret detail" not in body
    assert "secret detail" in caplog.text  # the host log has it


def test_admin_invoke_answers_202_before_the_function_ends(address):
    """FunctionsController.Invoke: Accepted at once; the function runs in the background."""
    release.clear()
    ran.clear()
    data = b'{"input": ""}'
    status, _, _, _ = exchange(address, b"POST /admin/functions/SLOW_TIMER HTTP/1.1\r\nHost: h\r\nx-functions-key: "
                               b"master\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(data), data))
    assert status == 202
    assert ran.wait(5)
    release.set()


def test_the_function_pool_is_sized_like_the_python_worker_s():
    """azure_functions_worker dispatcher: PYTHON_THREADPOOL_THREAD_COUNT, else (Python >= 3.9) the
    ThreadPoolExecutor default, min(32, CPUs + 4)."""
    assert pool_size({"PYTHON_THREADPOOL_THREAD_COUNT": "3"}) == 3
    assert pool_size({"PYTHON_THREADPOOL_THREAD_COUNT": "0"}) is None
    assert pool_size({"PYTHON_THREADPOOL_THREAD_COUNT": "many"}) is None
    host = Host([], HostKeys("m", "h", {}), "api", {})
    assert host.pool._max_workers == min(32, (os.cpu_count() or 1) + 4)  # noqa: SLF001
    assert server.HostServer.request_queue_size >= 1024
