"""The one Azure credential of the process: the app's managed identity.

User-assigned when `AZURE_CLIENT_ID` is set, else system-assigned. One instance per client
ID per process, shared by Blob Storage and the AWS token exchange, so azure-identity's
token cache serves both and the identity endpoint is not asked twice for the same token.
"""

from __future__ import annotations

import threading
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from crosscloud.errors import IdentityError

_lock = threading.Lock()
_credentials: dict[str | None, GuardedCredential] = {}
# A request waiting on a token should fail in seconds when the endpoint is down or hangs, not
# minutes (azure-core's default read timeout is 300 s): at most 3 x 4 s reads + 1 s of backoff.
IDENTITY_RETRIES = {"retry_total": 2, "retry_backoff_factor": 0.5, "connection_timeout": 3, "read_timeout": 4}


class GuardedCredential:
    """A token credential whose failures are `IdentityError`s naming the identity and resource.

    Wrapping matters because SDK clients treat a transport error raised while getting a
    token as a storage outage and retry it with storage's long backoff; an
    `IdentityError` is not theirs to retry, and it says what actually failed.
    """

    def __init__(self, inner: TokenCredential, who: str):
        self.inner = inner
        self.who = who

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            return self.inner.get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:
            raise _identity_error(self.who, scopes, exc) from None
        except AzureError as exc:
            raise IdentityError(f"{self.who} could not get a token for {_resource(scopes)}: the identity "
                                f"endpoint did not answer ({type(exc).__name__})") from None

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close:
            close()


def _resource(scopes: tuple[str, ...]) -> str:
    return scopes[0].removesuffix("/.default") if scopes else "(no scope)"


def _identity_error(who: str, scopes: tuple[str, ...], exc: ClientAuthenticationError) -> IdentityError:
    detail = _first_line(getattr(exc, "message", None) or str(exc))
    message = f"{who} could not get a token for {_resource(scopes)}: {detail}"
    if "AADSTS" in detail:  # Entra answered: a configuration problem, not an outage
        return IdentityError(message, code="identity_refused", status=502, retry_after=0)
    return IdentityError(message)


def managed_identity(client_id: str | None) -> GuardedCredential:
    """The process-wide credential for `client_id` (None: system-assigned)."""
    with _lock:
        credential = _credentials.get(client_id)
        if credential is None:
            inner = ManagedIdentityCredential(client_id=client_id, **IDENTITY_RETRIES) if client_id \
                else ManagedIdentityCredential(**IDENTITY_RETRIES)
            credential = GuardedCredential(inner, describe(client_id))
            _credentials[client_id] = credential
        return credential


def describe(client_id: str | None) -> str:
    return f"user-assigned identity {client_id}" if client_id else "system-assigned identity"


def get_token(credential: TokenCredential, resource: str, who: str = "the managed identity") -> AccessToken:
    """A token for `resource` (an App ID URI or resource URL), with a clear error on failure.

    azure-identity wants scopes; for a managed identity the scope is the resource plus
    `/.default`. The message of a failure names the resource and the identity, never a token.
    """
    scope = resource if resource.endswith("/.default") else resource.rstrip("/") + "/.default"
    return GuardedCredential(credential, who).get_token(scope)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line[:500]


def reset_for_tests() -> None:
    """Forget cached credentials (tests switch identities within one process)."""
    with _lock:
        _credentials.clear()
