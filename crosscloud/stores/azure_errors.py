"""Azure SDK errors as crosscloud errors: what failed, why, and what fixes it (never a SAS)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from crosscloud.errors import CrossCloudError, IdentityError, NotFound, UpstreamError

PERMISSION_HINTS = {
    "AuthorizationPermissionMismatch": "the identity lacks a data role on the container: assign "
    "'Storage Blob Data Reader' (read; 'Storage Blob Data Contributor' to restore) on the container to {who}",
    "AuthorizationFailure": "the storage account refused the request (network rules or firewall) "
    "for {who}",
    "InvalidAuthenticationInfo": "the storage account did not accept {who}'s token (wrong tenant or "
    "audience)",
    "ContainerNotFound": "the container in AZURE_STORAGE_CONTAINER_URL does not exist",
}


@contextlib.contextmanager
def azure_errors(action: str, who: str, key: str | None = None) -> Iterator[None]:
    """Translate azure-core errors into crosscloud errors that name the cause."""
    try:
        yield
    except CrossCloudError:
        raise
    except ResourceNotFoundError as exc:
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            raise UpstreamError(f"Azure {action} failed: {PERMISSION_HINTS['ContainerNotFound']}",
                                code="azure_container_not_found") from None
        raise NotFound(f"no Azure blob named {key!r}" if key else f"Azure {action}: not found") from None
    except ClientAuthenticationError as exc:
        hint = PERMISSION_HINTS.get(str(getattr(exc, "error_code", "") or ""))
        if isinstance(exc, HttpResponseError) and exc.status_code in (401, 403):
            message = hint.format(who=who) if hint else f"access denied ({getattr(exc, 'error_code', None)})"
            raise UpstreamError(f"Azure {action} refused: {message}", code="azure_forbidden") from None
        raise IdentityError(f"Azure {action}: {who} could not authenticate: "
                            f"{str(exc).splitlines()[0][:300]}") from None
    except HttpResponseError as exc:
        if exc.status_code in (401, 403):
            hint = PERMISSION_HINTS.get(str(getattr(exc, "error_code", "") or ""), "access denied ({code})")
            code = getattr(exc, "error_code", None)
            raise UpstreamError(f"Azure {action} refused: {hint.format(who=who, code=code)}",
                                code="azure_forbidden") from None
        retry = exc.status_code in (408, 429, 500, 502, 503, 504)
        raise UpstreamError(f"Azure {action} failed with HTTP {exc.status_code} "
                            f"({getattr(exc, 'error_code', None)})",
                            code="azure_error", status=503 if retry else 502,
                            retry_after=5 if retry else None) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise UpstreamError(f"Azure Blob Storage did not answer {action} in time "
                            f"({type(exc).__name__})", code="azure_unavailable", status=503,
                            retry_after=5) from None
