"""Fixed facts of the local cloud: paths, ports, identities, names.

Everything a devstack component needs to agree on lives here, so the identity endpoint,
the AWS emulator and the provisioning cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

TENANT_ID = "7f5c0a3e-1d2b-4c6a-9e8f-0a1b2c3d4e5f"
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
AUDIENCE = f"api://{TENANT_ID}/crosscloud"
STORAGE_RESOURCE = "https://storage.azure.com"

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
AZURE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
AZURE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CONTAINER = "data"
SHARD_QUEUE = "crosscloud-backup-shards"  # the backup fan-out queue (its poison queue: <name>-poison)
S3_BUCKET = "crosscloud-data"
BACKUP_PREFIX = "backup/"
READ_ROLE = "crosscloud-read"
BACKUP_ROLE = "crosscloud-backup"
RESTORE_ROLE = "crosscloud-restore"
ADMIN_USER = "devstack-admin"


@dataclass(frozen=True)
class Identity:
    """A managed identity the local endpoint can issue tokens for."""

    name: str
    client_id: str  # appid
    principal_id: str  # oid == sub
    user_assigned: bool


SYSTEM_IDENTITY = Identity(
    "system-assigned", "0b6c7d4e-5f60-4a1b-8c2d-3e4f5a6b7c80", "a1000000-0000-4000-8000-000000000001", False
)
APP_IDENTITY = Identity(
    "crosscloud-uami", "c1a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b", "a2000000-0000-4000-8000-000000000002", True
)
OTHER_IDENTITY = Identity(
    "other-uami", "d9e8f7a6-b5c4-4d3e-9f2a-1b0c9d8e7f6a", "a3000000-0000-4000-8000-000000000003", True
)
IDENTITIES = (SYSTEM_IDENTITY, APP_IDENTITY, OTHER_IDENTITY)
# The identities the roles' trust policies admit (their `sub`). OTHER_IDENTITY is left out
# on purpose: it is how tests prove a foreign identity is refused.
TRUSTED_PRINCIPALS = (APP_IDENTITY.principal_id, SYSTEM_IDENTITY.principal_id)


def state_dir() -> Path:
    """Where the running stack keeps its files (`DEVSTACK_DIR` overrides, for parallel stacks)."""
    return Path(os.environ.get("DEVSTACK_DIR", REPO_ROOT / ".devstack")).resolve()


@dataclass(frozen=True)
class Ports:
    azurite: int
    aws: int
    identity: int
    functions: int
    queue: int

    @classmethod
    def from_env(cls) -> Ports:
        """Default ports, shifted by `DEVSTACK_PORT_OFFSET` so two stacks can coexist."""
        raw = os.environ.get("DEVSTACK_PORT_OFFSET", "0")
        try:
            offset = int(raw)
        except ValueError:
            raise SystemExit(f"DEVSTACK_PORT_OFFSET must be an integer, got {raw!r}") from None
        return cls(10000 + offset, 4566 + offset, 8181 + offset, 7071 + offset, 10001 + offset)


HOST = "127.0.0.1"


def tools_dir() -> Path:
    return REPO_ROOT / ".tools"


def azurite_bin(service: str = "blob") -> Path:
    """Azurite's launcher for one service (`blob`, `queue`)."""
    return tools_dir() / "node" / "node_modules" / ".bin" / f"azurite-{service}"
