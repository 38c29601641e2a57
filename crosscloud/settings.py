"""Typed app settings read from the environment, validated when first needed.

Nothing here runs at import time, so a missing setting never breaks function indexing;
each accessor raises `SettingError` naming the setting and what a valid value looks like.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from crosscloud.errors import SettingError

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
DOWNLOAD_MAX_BYTES_DEFAULT = 4 * 1024 * 1024
DOWNLOAD_MAX_BYTES_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class ContainerUrl:
    url: str
    account_url: str
    container: str


class Settings:
    """Accessors over an environment mapping (default `os.environ`), one per app setting."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._env = os.environ if environ is None else environ

    def _get(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name, "").strip()
        if value:
            return value
        if default is not None:
            return default
        raise SettingError(f"app setting {name} is not set")

    def _match(self, name: str, pattern: re.Pattern[str], example: str, default: str | None = None) -> str:
        value = self._get(name, default)
        if not pattern.match(value):
            raise SettingError(f"app setting {name} is malformed: expected something like {example}")
        return value

    # --- identity -------------------------------------------------------------------
    @property
    def azure_client_id(self) -> str | None:
        """Client ID of a user-assigned identity, or None for the system-assigned one."""
        value = self._env.get("AZURE_CLIENT_ID", "").strip()
        if value and not GUID.match(value):
            raise SettingError("app setting AZURE_CLIENT_ID is malformed: expected the client ID "
                               "(a GUID) of a user-assigned managed identity, or leave it unset "
                               "for the system-assigned identity")
        return value or None

    # --- Azure ------------------------------------------------------------------------
    @property
    def container_url(self) -> ContainerUrl:
        name = "AZURE_STORAGE_CONTAINER_URL"
        raw = self._get(name).rstrip("/")
        parsed = urlparse(raw)
        segments = [s for s in parsed.path.split("/") if s]
        path_style = bool(parsed.hostname) and (
            parsed.hostname[0].isdigit() or parsed.hostname == "localhost")
        expected = 2 if path_style else 1  # Azurite / IP hosts carry the account in the path
        if parsed.scheme != "https" or not parsed.hostname or len(segments) != expected \
                or not CONTAINER.match(segments[-1]) or parsed.query:
            raise SettingError(f"app setting {name} is malformed: expected "
                               "https://<account>.blob.core.windows.net/<container> "
                               "(https, no SAS or query string)")
        account_url = f"{parsed.scheme}://{parsed.netloc}" + ("/" + segments[0] if path_style else "")
        return ContainerUrl(raw, account_url, segments[-1])

    # --- AWS --------------------------------------------------------------------------
    @property
    def aws_role_arn(self) -> str:
        return self._match("AWS_ROLE_ARN", ROLE_ARN, "arn:aws:iam::123456789012:role/crosscloud-read")

    @property
    def aws_backup_role_arn(self) -> str:
        if not self._env.get("AWS_BACKUP_ROLE_ARN", "").strip():
            return self.aws_role_arn
        return self._match("AWS_BACKUP_ROLE_ARN", ROLE_ARN, "arn:aws:iam::123456789012:role/crosscloud-backup")

    @property
    def aws_restore_role_arn(self) -> str:
        """The role restores read backup versions with (default AWS_BACKUP_ROLE_ARN)."""
        if not self._env.get("AWS_RESTORE_ROLE_ARN", "").strip():
            return self.aws_backup_role_arn
        return self._match("AWS_RESTORE_ROLE_ARN", ROLE_ARN, "arn:aws:iam::123456789012:role/crosscloud-restore")

    @property
    def aws_audience(self) -> str:
        value = self._get("AWS_WEB_IDENTITY_AUDIENCE")
        if any(c.isspace() for c in value) or value.endswith("/.default"):
            raise SettingError("app setting AWS_WEB_IDENTITY_AUDIENCE is malformed: expected the "
                               "App ID URI the token is issued for, e.g. api://<tenant-id>/crosscloud "
                               "(without /.default)")
        return value

    @property
    def aws_region(self) -> str:
        return self._match("AWS_REGION", REGION, "eu-west-1")

    @property
    def s3_bucket(self) -> str:
        return self._match("S3_BUCKET", BUCKET, "my-data-bucket (3-63 lowercase letters, digits, . and -)")

    @property
    def backup_bucket(self) -> str:
        if not self._env.get("BACKUP_S3_BUCKET", "").strip():
            return self.s3_bucket
        return self._match("BACKUP_S3_BUCKET", BUCKET, "my-backup-bucket")

    @property
    def backup_prefix(self) -> str:
        value = self._env.get("BACKUP_S3_PREFIX", "backup/")
        if value.startswith("/") or (value and not value.endswith("/")) or "//" in value:
            raise SettingError("app setting BACKUP_S3_PREFIX is malformed: expected a prefix like "
                               "backup/ (no leading slash, ending in a slash)")
        return value

    def int_setting(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingError(f"app setting {name} is malformed: expected an integer, got {raw!r}") from None
        if value < minimum:
            raise SettingError(f"app setting {name} must be at least {minimum}")
        return value

    @property
    def download_max_bytes(self) -> int:
        """Largest object served inline by GET /api/objects/...; larger ones get a 307 to a link.

        The Functions host buffers a Python HTTP response whole and copies it on the way
        out (a 64 MiB body cost the worker ~384 MiB), so the cap stays a few MiB.
        """
        value = self.int_setting("DOWNLOAD_MAX_BYTES", DOWNLOAD_MAX_BYTES_DEFAULT, minimum=0)
        if value > DOWNLOAD_MAX_BYTES_LIMIT:
            raise SettingError(f"app setting DOWNLOAD_MAX_BYTES must be at most {DOWNLOAD_MAX_BYTES_LIMIT} "
                               "(16 MiB): larger objects are redirected to a short-lived link instead")
        return value

    @property
    def link_ttl_seconds(self) -> int:
        value = self.int_setting("DOWNLOAD_LINK_TTL_SECONDS", 300, minimum=60)
        # An S3 link lives no longer than the temporary credentials that signed it, and
        # botocore only guarantees 10 minutes left on them (its mandatory refresh window).
        if value > 600:
            raise SettingError("app setting DOWNLOAD_LINK_TTL_SECONDS must be at most 600")
        return value


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    return Settings(environ)
