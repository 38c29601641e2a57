"""HTTP transport shared by the stores: one TLS context per CA bundle, pools sized to the work.

Why: requests loads the CA bundle again for every new connection (~30 ms for ~260 CAs),
keeps 10 connections per host (so more concurrent copies churn TLS handshakes) and scans
the environment for proxies on every request. Here the bundle is loaded once per process
into an SSL context that every pool shares, pools hold at least as many connections as
the configured concurrency, and the proxy environment is read once.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
import urllib.request
from typing import Any

import urllib3
from urllib3.util.ssl_ import create_urllib3_context

from crosscloud.settings import Settings

_lock = threading.Lock()
_pools: dict[tuple[str | None, int, float], urllib3.PoolManager] = {}


def azure_ca_file() -> str | None:
    """The CA bundle requests would use for Azure: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else
    the system's / certifi's (None: OpenSSL's defaults, which `ssl_context` adds certifi to)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def aws_ca_file() -> str | None:
    """The CA bundle botocore would use: AWS_CA_BUNDLE, else its default (certifi)."""
    return os.environ.get("AWS_CA_BUNDLE") or None


@functools.lru_cache(maxsize=8)
def ssl_context(cafile: str | None) -> ssl.SSLContext:
    """One verifying context per CA bundle per process; the bundle is read once, here."""
    context = create_urllib3_context()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    else:
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context


def pool_size(settings: Settings) -> int:
    """Connections per host: every copy, part upload and check that can be in flight at once."""
    concurrency = settings.int_setting("BACKUP_CONCURRENCY", 8)
    parts = settings.int_setting("BACKUP_PART_CONCURRENCY", 4)
    checkers = settings.int_setting("BACKUP_CHECKERS", 16)
    return max(32, concurrency * parts + checkers + 4)


def pool_manager(cafile: str | None, size: int, timeout: float, *, tls: bool = True) -> urllib3.PoolManager:
    """A process-wide pool manager per (CA bundle, size, timeout); retries are the caller's.
    `tls=False` for plain-HTTP endpoints only (a local emulator): no CA bundle is read."""
    key = (cafile if tls else "(no tls)", size, timeout)
    with _lock:
        pools = _pools.get(key)
        if pools is None:
            tls_kwargs = {"ssl_context": ssl_context(cafile)} if tls else {}
            pools = urllib3.PoolManager(
                num_pools=16, maxsize=size, block=False, retries=False,
                timeout=urllib3.Timeout(connect=min(timeout, 10), read=timeout), **tls_kwargs)
            _pools[key] = pools
        return pools


def requests_session(size: int) -> Any:
    """A requests session for azure-core's RequestsTransport: the shared SSL context, `size`
    connections per host, and the proxy environment read once instead of per request."""
    import requests
    from requests.adapters import HTTPAdapter

    class SharedContextAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = ssl_context(azure_ca_file())
            super().init_poolmanager(*args, **kwargs)

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            # The context already verifies against the bundle; requests would set the file
            # on each connection, and urllib3 would load it again for every handshake.
            if url.lower().startswith("https") and verify:
                conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None
            else:
                super().cert_verify(conn, url, verify, cert)

    session = requests.Session()
    adapter = SharedContextAdapter(pool_connections=16, pool_maxsize=size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    proxies = urllib.request.getproxies()
    if not proxies:
        session.trust_env = False  # nothing to find: skip the per-request environment scan
    return session


def reset_for_tests() -> None:
    with _lock:
        for pools in _pools.values():
            pools.clear()
        _pools.clear()
    ssl_context.cache_clear()

