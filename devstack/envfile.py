"""`.devstack/env`: the settings that point the app at the local cloud.

Precedence when applied to a process (`apply`): values already in the environment win for
app settings and `AWS_ENDPOINT_URL_*` (so a test can point one endpoint elsewhere);
`REQUESTS_CA_BUNDLE` is always the file's, because the bundle it names is the only one
that holds both the system's CAs and the devstack CA.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from devstack import config

ALWAYS_FROM_FILE = {"REQUESTS_CA_BUNDLE"}


def path() -> Path:
    return config.state_dir() / "env"


def write(values: Mapping[str, str], target: Path | None = None) -> Path:
    target = target or path()
    tmp = target.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    tmp.replace(target)
    return target


def read(source: Path | None = None) -> dict[str, str]:
    source = source or path()
    if not source.exists():
        raise FileNotFoundError(f"{source} not found: start the local cloud with `python -m devstack up`")
    values: dict[str, str] = {}
    for line in source.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def add_missing(values: Mapping[str, str], target: Path | None = None) -> dict[str, str]:
    """Append settings the file does not have yet (e.g. function keys made by `serve`), under a lock
    so two hosts starting at once agree; returns the file's values afterwards."""
    target = target or path()
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read(target)
        missing = {k: v for k, v in values.items() if k not in current}
        if missing:
            write({**current, **missing}, target)
        return {**current, **missing}


def merged(file_values: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The values a process should see: the file's, overridden by `environ` except the CA bundle."""
    result = dict(file_values)
    for key in file_values:
        if key in ALWAYS_FROM_FILE or key.startswith("DEVSTACK_"):
            continue
        if key in environ:
            result[key] = environ[key]
    return result


def apply(environ: MutableMapping[str, str] | None = None, source: Path | None = None) -> dict[str, str]:
    """Load the file into `environ` (default `os.environ`) with the precedence above."""
    environ = os.environ if environ is None else environ
    values = merged(read(source), environ)
    environ.update(values)
    return values
