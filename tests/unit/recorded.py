"""Recorded HTTP responses played back under the real SDK pipelines (unit tests only).

The local cloud cannot produce Entra's AADSTS refusals or Azure RBAC's 403, so these tests
replay responses shaped like the real services' through azure-core's RequestsTransport:
azure-identity and azure-storage-blob parse them exactly as they would parse the cloud's.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3.response import HTTPResponse

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "c1a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b"
PRINCIPAL = "5f1b2a3c-4d5e-4f60-9a7b-8c9d0e1f2a3b"
AUDIENCE = "api://contoso-crosscloud"
IDENTITY_ENDPOINT = "http://169.254.129.3:8081/msi/token"

# As App Service's identity endpoint relays them (message + trace, correlation, timestamp).
AADSTS500011 = (f"AADSTS500011: The resource principal named {AUDIENCE} was not found in the tenant named Contoso. "
                "This can happen if the application has not been installed by the administrator of the tenant "
                "or consented to by any user in the tenant. You might have sent your authentication request to "
                "the wrong tenant. Trace ID: 0c9f2a6e-1b3d-4c5e-8f70-a1b2c3d4e500 Correlation ID: "
                "6d2e1f0a-9b8c-4d7e-a6f5-e4d3c2b1a090 Timestamp: 2025-03-11 09:14:27Z")
AADSTS501051 = (f"AADSTS501051: Application '{CLIENT_ID}'(crosscloud-uami) is not assigned to a role for the "
                f"application '{AUDIENCE}'(crosscloud-aws). Trace ID: 4e8d7c6b-5a49-4382-9170-6f5e4d3c2b00 "
                "Correlation ID: 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d Timestamp: 2025-03-11 09:15:02Z")
AADSTS90009 = (f"AADSTS90009: Application '{CLIENT_ID}'({AUDIENCE}) is requesting a token for itself. This "
               "scenario is supported only if resource is specified using the GUID based App Identifier. "
               "Trace ID: 1d2c3b4a-5968-4776-8584-93a2b1c0d900 Correlation ID: "
               "8f7e6d5c-4b3a-4291-8e0f-d1c2b3a49586 Timestamp: 2025-03-11 09:16:40Z")
AUTHORIZATION_PERMISSION_MISMATCH = (
    '\ufeff<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>'
    "This request is not authorized to perform this operation using this permission.\n"
    "RequestId:7d3e1c0b-601e-0042-2a8f-93c5a8000000\nTime:2025-03-11T09:17:12.4417021Z</Message></Error>")


def fake_jwt(**claims: object) -> str:
    """An unsigned JWT with Entra-v1-shaped claims (nothing verifies it in these tests)."""
    now = int(time.time())
    body = {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{TENANT}/", "iat": now,
            "nbf": now, "exp": now + 3600, "appid": CLIENT_ID, "oid": PRINCIPAL, "sub": PRINCIPAL,
            "tid": TENANT, "ver": "1.0", **claims}

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'JWT', 'alg': 'RS256', 'kid': 'k1'})}.{part(body)}.c2lnbmF0dXJl"


@dataclass
class Recorded:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


class ReplayAdapter(HTTPAdapter):
    """Answers each request with the first recording whose key occurs in the URL.

    Responses are built the way requests builds a real one (urllib3 response, then
    `build_response`), so azure-core's transport reads them like network responses.
    """

    def __init__(self, recordings: dict[str, Recorded]):
        super().__init__()
        self.recordings = recordings
        self.urls: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: object, **kwargs: object) -> requests.Response:
        url = str(request.url)
        self.urls.append(url)
        recorded = next((r for key, r in self.recordings.items() if key in url), None)
        if recorded is None:
            raise AssertionError(f"no recording for {request.method} {url}")
        data = recorded.body.encode()
        raw = HTTPResponse(body=io.BytesIO(data), headers={**recorded.headers, "Content-Length": str(len(data))},
                           status=recorded.status, reason="recorded", preload_content=False,
                           decode_content=False)
        return self.build_response(request, raw)


def transport(adapter: ReplayAdapter) -> RequestsTransport:
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=False)


def token_response(resource: str) -> Recorded:
    token = fake_jwt(aud=resource)
    return Recorded(200, json.dumps({"access_token": token, "expires_on": str(int(time.time()) + 3600),
                                     "resource": resource, "token_type": "Bearer", "client_id": CLIENT_ID}))


def refusal(message: str) -> Recorded:
    return Recorded(400, json.dumps({"statusCode": 400, "message": message,
                                     "correlationId": "6d2e1f0a-9b8c-4d7e-a6f5-e4d3c2b1a090"}))
