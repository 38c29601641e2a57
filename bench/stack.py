"""Use the running local cloud, or start one for the benchmark and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from devstack import envfile, stack


@contextlib.contextmanager
def local_cloud() -> Iterator[dict[str, str]]:
    started = not stack.running()
    if started:
        stack.up()
    saved = dict(os.environ)
    try:
        yield envfile.apply()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if started:
            stack.down()
