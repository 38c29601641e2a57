"""`devstack serve` holds load and refuses malformed requests cleanly (issue 14, item 4).

Latency under load is measured in bench/load_bench.py, never asserted here; these tests only
check that every request gets an answer and every refusal is JSON, with no traceback.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.e2e
CONNECTIONS = 300


def test_simultaneous_connections_are_all_answered(served):
    """A listen backlog the size Kestrel's accept loop gives: 300 connections opened at once all get
    their answer (the stdlib's backlog of 5 left most of them unanswered)."""
    start = threading.Barrier(CONNECTIONS)

    def one(_: int) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
        start.wait()
        try:
            conn.request("GET", "/api/health")
            return str(conn.getresponse().status)
        except OSError as exc:
            return type(exc).__name__
        finally:
            conn.close()

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        outcomes = Counter(pool.map(one, range(CONNECTIONS)))
    assert outcomes == {"200": CONNECTIONS}


@pytest.mark.parametrize(("data", "status"), [
    (b"GET /api/health HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400),
    (b"GET /api/health HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /api/health HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 400),
    (b"POST /api/backup HTTP/1.1\r\nHost: h\r\nContent-Length: 200000000\r\n\r\n", 413),
    (b"NOT A REQUEST LINE AT ALL\r\n\r\n", 400),
    (b"TRACE /api/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 404),
])
def test_malformed_requests_get_a_json_answer_and_no_traceback(served, data, status):
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(data)
        raw = b""
        while chunk := sock.recv(65536):  # the server closes: no hang
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split()[1] == str(status).encode()
    assert b"application/json" in head
    assert json.loads(body)["error"]["code"]
    assert "Traceback" not in served.log_text()
