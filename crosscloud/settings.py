"""Typed app settings read from the environment, validated when first needed.

Nothing here runs at import time, so a missing setting never breaks function indexing;
each accessor raises `SettingError` naming the setting and what a valid value looks like
(never echoing a value that could hold a secret). Empty means unset, for every setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from crosscloud.errors import SettingError

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
DOWNLOAD_MAX_BYTES_DEFAULT = 4 * 1024 * 1024
DOWNLOAD_MAX_BYTES_LIMIT = 16 * 1024 * 1024
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}"
                      r"[a-zA-Z0-9])?)*\.?$")
AUDIENCE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^\s/][^\s]{0,900}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$")
DIGITS = re.compile(r"^[0-9]{1,12}$")  # ASCII only: int() would also take '١٢' and '1_000'
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Endpoints are standard variables read by the SDKs themselves; checked here so a bad value is
# named instead of failing deep inside botocore or azure-identity.
AWS_ENDPOINTS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS")
DEFAULT_BACKUP_PREFIX = "backup/"


@dataclass(frozen=True)
class ContainerUrl:
    url: str
    account_url: str
    container: str


def parse_url(name: str, raw: str, *, schemes: tuple[str, ...], example: str) -> SplitResult:
    """`raw` as a URL with one of `schemes`, a valid host and port, no credentials or fragment."""
    bad = SettingError(f"app setting {name} is malformed: expected a URL like {example}")
    if CONTROL.search(raw) or any(c.isspace() for c in raw) or len(raw) > 2048:
        raise bad
    try:
        parts = urlsplit(raw)
        host, _port = parts.hostname, parts.port  # .port raises ValueError when out of range
    except ValueError:
        raise bad from None
    if parts.scheme not in schemes or not host or parts.username is not None or parts.fragment:
        raise bad
    if not (HOSTNAME.match(host) or _is_ip(host)):
        raise bad
    return parts


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Settings:
    """Accessors over an environment mapping (default `os.environ`), one per app setting."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._env = os.environ if environ is None else environ

    def raw(self, name: str) -> str:
        """The setting stripped of surrounding whitespace; '' when unset."""
        return self._env.get(name, "").strip()

    def _get(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
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
        value = self.raw("AZURE_CLIENT_ID")
        if value and not GUID.match(value):
            raise SettingError("app setting AZURE_CLIENT_ID is malformed: expected the client ID "
                               "(a GUID) of a user-assigned managed identity, or leave it unset "
                               "for the system-assigned identity")
        return value or None

    def check_endpoints(self) -> None:
        """The standard endpoint variables the SDKs read (IDENTITY_ENDPOINT, AWS_ENDPOINT_URL*,
        REQUESTS_CA_BUNDLE), checked before any client is built from them."""
        if self.raw("IDENTITY_ENDPOINT"):
            parse_url("IDENTITY_ENDPOINT", self.raw("IDENTITY_ENDPOINT"), schemes=("http", "https"),
                      example="http://localhost:8081/msi/token (set by App Service)")
        for name in AWS_ENDPOINTS:
            if self.raw(name):
                parts = parse_url(name, self.raw(name), schemes=("http", "https"),
                                  example="https://s3.eu-west-1.amazonaws.com")
                if parts.query:
                    raise SettingError(f"app setting {name} is malformed: expected a URL without a query string")
        bundle = self.raw("REQUESTS_CA_BUNDLE")
        if bundle and not os.path.isfile(bundle):
            raise SettingError("app setting REQUESTS_CA_BUNDLE names no readable file: expected the path of "
                               "a PEM bundle of trusted CAs, or leave it unset")

    # --- Azure ------------------------------------------------------------------------
    @property
    def container_url(self) -> ContainerUrl:
        name = "AZURE_STORAGE_CONTAINER_URL"
        raw = self._get(name).rstrip("/")
        expected = "https://<account>.blob.core.windows.net/<container> (https, no SAS or query string)"
        parsed = parse_url(name, raw, schemes=("https",), example=expected)
        host = parsed.hostname or ""
        segments = [s for s in parsed.path.split("/") if s]
        path_style = _is_ip(host) or host == "localhost"
        wanted = 2 if path_style else 1  # Azurite / IP hosts carry the account in the path
        if len(segments) != wanted or not CONTAINER.match(segments[-1]) or parsed.query:
            raise SettingError(f"app setting {name} is malformed: expected {expected}")
        account_url = f"{parsed.scheme}://{parsed.netloc}" + ("/" + segments[0] if path_style else "")
        return ContainerUrl(raw, account_url, segments[-1])

    # --- AWS --------------------------------------------------------------------------
    @property
    def aws_role_arn(self) -> str:
        return self._match("AWS_ROLE_ARN", ROLE_ARN, "arn:aws:iam::123456789012:role/crosscloud-read")

    @property
    def aws_backup_role_arn(self) -> str:
        if not self.raw("AWS_BACKUP_ROLE_ARN"):
            return self.aws_role_arn
        return self._match("AWS_BACKUP_ROLE_ARN", ROLE_ARN, "arn:aws:iam::123456789012:role/crosscloud-backup")

    @property
    def aws_restore_role_arn(self) -> str:
        """The role restores read backup versions with (default AWS_BACKUP_ROLE_ARN)."""
        if not self.raw("AWS_RESTORE_ROLE_ARN"):
            return self.aws_backup_role_arn
        return self._match("AWS_RESTORE_ROLE_ARN", ROLE_ARN, "arn:aws:iam::123456789012:role/crosscloud-restore")

    @property
    def backup_role_source(self) -> str:
        """Which setting the backup role came from, for messages about what it may not do."""
        if self.raw("AWS_BACKUP_ROLE_ARN"):
            return "AWS_BACKUP_ROLE_ARN"
        return "AWS_ROLE_ARN, used because AWS_BACKUP_ROLE_ARN is unset"

    @property
    def aws_audience(self) -> str:
        value = self._get("AWS_WEB_IDENTITY_AUDIENCE")
        if not AUDIENCE.match(value) or value.endswith("/.default"):
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
        if not self.raw("BACKUP_S3_BUCKET"):
            return self.s3_bucket
        return self._match("BACKUP_S3_BUCKET", BUCKET, "my-backup-bucket")

    @property
    def backup_prefix(self) -> str:
        """Empty or unset is the default `backup/`, never the bucket's root."""
        value = self.raw("BACKUP_S3_PREFIX") or DEFAULT_BACKUP_PREFIX
        segments = value.split("/")[:-1]
        if (not value.endswith("/") or any(s in ("", ".", "..") for s in segments) or CONTROL.search(value)
                or len(value.encode()) > 512):
            raise SettingError("app setting BACKUP_S3_PREFIX is malformed: expected a prefix like "
                               "backup/ (no leading slash, ending in a slash, no empty, . or .. segment, "
                               "at most 512 bytes); unset means backup/")
        return value

    def int_setting(self, name: str, default: int, minimum: int = 1, maximum: int = 1_000_000) -> int:
        raw = self.raw(name)
        if not raw:
            return default
        if not DIGITS.match(raw):
            raise SettingError(f"app setting {name} is malformed: expected a whole number "
                               f"from {minimum} to {maximum} (ASCII digits)")
        value = int(raw)
        if not minimum <= value <= maximum:
            raise SettingError(f"app setting {name} must be from {minimum} to {maximum}")
        return value

    @property
    def upstream_timeout_s(self) -> int:
        """Read timeout of one call to either cloud (backups: per part or range)."""
        return self.int_setting("UPSTREAM_TIMEOUT_SECONDS", 30, maximum=600)

    @property
    def upstream_deadline_s(self) -> int:
        """Longest a listing or read waits on a cloud that does not answer, retries included;
        below the front end's 230 s."""
        return self.int_setting("UPSTREAM_DEADLINE_SECONDS", 15, minimum=5, maximum=200)

    @property
    def download_max_bytes(self) -> int:
        """Largest object served inline by GET /api/objects/...; larger ones get a 307 to a link.

        The Functions host buffers a Python HTTP response whole and copies it on the way
        out (a 64 MiB body cost the worker ~384 MiB), so the cap stays a few MiB (at most 16 MiB:
        larger objects are redirected to a short-lived link instead).
        """
        return self.int_setting("DOWNLOAD_MAX_BYTES", DOWNLOAD_MAX_BYTES_DEFAULT, minimum=0,
                                maximum=DOWNLOAD_MAX_BYTES_LIMIT)

    @property
    def link_ttl_seconds(self) -> int:
        # An S3 link lives no longer than the temporary credentials that signed it, and
        # botocore only guarantees 10 minutes left on them (its mandatory refresh window).
        return self.int_setting("DOWNLOAD_LINK_TTL_SECONDS", 300, minimum=60, maximum=600)


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    return Settings(environ)
