"""The one Azure credential of the process: the app's managed identity.

User-assigned when `AZURE_CLIENT_ID` is set, else system-assigned. One instance per client
ID per process, shared by Blob Storage and the AWS token exchange, so azure-identity's
token cache serves both and the identity endpoint is not asked twice for the same token.
"""

from __future__ import annotations

import threading

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from crosscloud.errors import IdentityError
from crosscloud.settings import Settings

_lock = threading.Lock()
_credentials: dict[str | None, ManagedIdentityCredential] = {}


def managed_identity(client_id: str | None) -> ManagedIdentityCredential:
    """The process-wide credential for `client_id` (None: system-assigned)."""
    with _lock:
        credential = _credentials.get(client_id)
        if credential is None:
            credential = ManagedIdentityCredential(client_id=client_id) if client_id \
                else ManagedIdentityCredential()
            _credentials[client_id] = credential
        return credential


def app_credential(settings: Settings | None = None) -> ManagedIdentityCredential:
    """The credential the app settings select."""
    return managed_identity((settings or Settings()).azure_client_id)


def describe(client_id: str | None) -> str:
    return f"user-assigned identity {client_id}" if client_id else "system-assigned identity"


def get_token(credential: TokenCredential, resource: str, who: str = "the managed identity") -> AccessToken:
    """A token for `resource` (an App ID URI or resource URL), with a clear error on failure.

    azure-identity wants scopes; for a managed identity the scope is the resource plus
    `/.default`. The message of a failure names the resource and the identity, never a token.
    """
    scope = resource if resource.endswith("/.default") else resource.rstrip("/") + "/.default"
    try:
        return credential.get_token(scope)
    except ClientAuthenticationError as exc:
        detail = _first_line(getattr(exc, "message", None) or str(exc))
        raise IdentityError(f"{who} could not get a token for {resource}: {detail}") from None


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line[:500]


def reset_for_tests() -> None:
    """Forget cached credentials (tests switch identities within one process)."""
    with _lock:
        _credentials.clear()
