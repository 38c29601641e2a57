"""The errors crosscloud raises, each carrying what an HTTP caller needs.

Library code raises these; the HTTP adapters and the CLI only translate them (status,
`Retry-After`, exit code). Messages name the setting, claim, role or key involved and
never contain a token, credential or SAS.
"""

from __future__ import annotations


class CrossCloudError(Exception):
    """Base class: `code` is stable for scripts, `status` is the HTTP status to answer."""

    code = "internal_error"
    status = 500
    retry_after: int | None = None

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if retry_after is not None:
            self.retry_after = retry_after


class SettingError(CrossCloudError):
    """A required app setting is missing or malformed (names the setting)."""

    code = "configuration_error"
    status = 500


class BadRequest(CrossCloudError):
    code = "bad_request"
    status = 400


class NotFound(CrossCloudError):
    code = "not_found"
    status = 404


class TooLarge(CrossCloudError):
    code = "too_large"
    status = 413


class UpstreamError(CrossCloudError):
    """A cloud refused or failed a call; `status` 502 (refused) or 503 (retry may help)."""

    code = "upstream_error"
    status = 502


class IdentityError(UpstreamError):
    """The managed identity could not get a token (endpoint down, unknown resource, ...)."""

    code = "identity_error"
    status = 503
    retry_after = 5


class FederationError(UpstreamError):
    """STS refused to exchange the identity's token (trust, audience, role, ...)."""

    code = "federation_error"
    status = 502


class PreconditionFailed(CrossCloudError):
    """A conditional write lost: the object exists (if-none-match) or changed (if-match)."""

    code = "precondition_failed"
    status = 412


class IntegrityError(CrossCloudError):
    """Bytes read or written do not match their size or checksum; nothing was accepted."""

    code = "integrity_error"
    status = 502
