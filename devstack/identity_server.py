"""A local managed-identity endpoint speaking App Service's protocol, plus OIDC discovery.

azure-identity's ManagedIdentityCredential finds it through `IDENTITY_ENDPOINT` and
`IDENTITY_HEADER`, exactly as on App Service / Functions, so the production code path runs
unchanged. Tokens are RS256 JWTs shaped like Entra ID v1 access tokens; the issuer's
discovery document and JWKS are served here too, and the AWS emulator fetches them to
verify signatures the way STS does.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import config

KEY_ID = "devstack-key-1"


def load_or_create_signing_key(path: Path) -> rsa.RSAPrivateKey:
    """The issuer's RSA key; persisted so tests can mint tokens the issuer would."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return key


def _b64u_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwks_for(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {
        "keys": [
            {"kty": "RSA", "use": "sig", "kid": KEY_ID, "alg": "RS256",
             "n": _b64u_uint(numbers.n), "e": _b64u_uint(numbers.e)}
        ]
    }


def mint_token(
    key: rsa.RSAPrivateKey,
    identity: config.Identity,
    resource: str,
    *,
    ttl: int,
    issuer: str = config.ISSUER,
    now: float | None = None,
    kid: str = KEY_ID,
    **overrides: Any,
) -> str:
    """An Entra-v1-shaped access token for `identity`, audience `resource`."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "aud": resource,
        "iss": issuer,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "aio": "devstack",
        "appid": identity.client_id,
        "appidacr": "2",
        "idp": issuer,
        "idtyp": "app",
        "oid": identity.principal_id,
        "rh": "devstack",
        "sub": identity.principal_id,
        "tid": config.TENANT_ID,
        "uti": uuid.uuid4().hex[:22],
        "ver": "1.0",
        "xms_mirid": f"/subscriptions/devstack/resourcegroups/devstack/providers/"
        f"Microsoft.ManagedIdentity/{identity.name}",
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


class IdentityService:
    """State shared by the request handlers: keys, identities, counters."""

    def __init__(self, key: rsa.RSAPrivateKey, identity_header: str, public_url: str, ttl: int):
        self.key = key
        self.identity_header = identity_header
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl
        self.known_resources = {config.STORAGE_RESOURCE, config.AUDIENCE,
                                f"https://{config.AZURE_ACCOUNT}.blob.core.windows.net",
                                # An API Entra knows but AWS does not trust (not in the OIDC
                                # provider's client-ID list): the doctor's wrong-audience test.
                                f"api://{config.TENANT_ID}/other-app"}
        self.counters: Counter[str] = Counter()
        self.lock = threading.Lock()

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    def select_identity(self, query: dict[str, str]) -> config.Identity | None:
        if "client_id" in query:
            return next((i for i in config.IDENTITIES if i.client_id == query["client_id"]), None)
        if "principal_id" in query or "object_id" in query:
            wanted = query.get("principal_id") or query.get("object_id")
            return next((i for i in config.IDENTITIES if i.principal_id == wanted), None)
        if "mi_res_id" in query:
            return next((i for i in config.IDENTITIES if i.user_assigned
                         and query["mi_res_id"].endswith("/" + i.name)), None)
        return config.SYSTEM_IDENTITY


def _make_handler(service: IdentityService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "devstack-identity"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # quiet: request lines would include nothing secret, but are noise

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            tenant_prefix = f"/{config.TENANT_ID}"
            if url.path == "/msi/token":
                self._token(query)
            elif url.path in (f"{tenant_prefix}/.well-known/openid-configuration",
                              f"{tenant_prefix}/v2.0/.well-known/openid-configuration"):
                service.count("discovery")
                self._send(200, {
                    "issuer": config.ISSUER,
                    "jwks_uri": f"{service.public_url}{tenant_prefix}/discovery/keys",
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "token"],
                    "subject_types_supported": ["pairwise"],
                })
            elif url.path == f"{tenant_prefix}/discovery/keys":
                service.count("jwks")
                self._send(200, jwks_for(service.key))
            elif url.path == "/devstack/stats":
                with service.lock:
                    self._send(200, dict(service.counters) | _extra_stats())
            elif url.path == "/devstack/health":
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": "not found"})

        def _token(self, query: dict[str, str]) -> None:
            header = self.headers.get("X-IDENTITY-HEADER", "")
            if not hmac.compare_digest(header, service.identity_header):
                self._send(401, {"statusCode": 401, "message": "Missing or invalid X-IDENTITY-HEADER."})
                return
            if query.get("api-version") != "2019-08-01":
                self._send(400, {"statusCode": 400, "message": "Unsupported api-version; use 2019-08-01."})
                return
            resource = query.get("resource", "")
            identity = service.select_identity(query)
            if identity is None:
                self._send(400, {"statusCode": 400, "message":
                                 "No User Assigned or Delegated Managed Identity found for "
                                 "specified ClientId/ResourceId/PrincipalId."})
                return
            if resource.rstrip("/") not in service.known_resources:
                self._send(400, {"statusCode": 400, "message":
                                 f"AADSTS500011: The resource principal named {resource} was "
                                 f"not found in the tenant named {config.TENANT_ID}. This can "
                                 "happen if the application has not been installed by the "
                                 "administrator of the tenant or consented to by any user in "
                                 "the tenant. You might have sent your authentication request "
                                 "to the wrong tenant."})
                return
            token = mint_token(service.key, identity, resource.rstrip("/"), ttl=service.ttl)
            service.count(f"token:{resource.rstrip('/')}")
            claims = jwt.decode(token, options={"verify_signature": False})
            self._send(200, {
                "access_token": token,
                "expires_on": str(claims["exp"]),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            })

    return Handler


_extra_stats_sources: list[Any] = []


def _extra_stats() -> dict[str, int]:
    """Counters other in-process components (the AWS emulator) publish next to ours."""
    merged: dict[str, int] = {}
    for source in _extra_stats_sources:
        merged.update(source())
    return merged


def register_stats(source: Any) -> None:
    _extra_stats_sources.append(source)


def start(service: IdentityService, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((config.HOST, port), _make_handler(service))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="identity-endpoint", daemon=True).start()
    return server
