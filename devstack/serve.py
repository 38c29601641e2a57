"""`python -m devstack serve`: host function_app over HTTP the way the Functions host does.

For machines without Azure Functions Core Tools. Start-up follows the host: index the app
through the azure-functions library's own metadata (devstack/host/metadata.py), create the
keys a function has not got yet, resolve `%SETTING%` expressions and validate timer schedules
(a failure puts that one function in error, logged, the rest keep working), map the HTTP
routes under host.json's route prefix, then serve (devstack/host/server.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

from devstack import config, envfile, queue_host
from devstack.host import keys, metadata, server
from devstack.host.dispatch import Host

log = logging.getLogger("devstack.serve")


def build_host(module: str = "function_app") -> Host:
    """Index the app and create its keys, reading and completing `.devstack/env`."""
    functions = metadata.index(module)
    host_keys, added = keys.load(envfile.read(), [f.name for f in functions])
    if added:
        envfile.add_missing(added)
        host_keys, _ = keys.load(envfile.read(), [f.name for f in functions])  # another host may have won
    host_json = json.loads((config.REPO_ROOT / "host.json").read_text())
    return Host(functions, host_keys, metadata.route_prefix(host_json), os.environ)


def describe(host: Host, base: str) -> str:
    """The function list `func start` prints: HTTP routes with methods, other triggers by type."""
    lines = ["Functions:"]
    for function in host.functions.values():
        if function.name in host.errors:
            lines.append(f"    {function.name}: in error (see the log)")
        elif function.is_http:
            methods = ",".join(sorted(function.methods)) if function.methods else "all methods"
            route = next(r.template for r in host.routes.routes if r.target == function.name)
            lines.append(f"    {function.name}: [{methods}] {base}/{route}")
        else:
            lines.append(f"    {function.name}: {function.trigger.get('type')}")
    return "\n".join(lines)


def main(port: int | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        envfile.apply()
    except FileNotFoundError as exc:
        print(f"devstack serve: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(config.REPO_ROOT))
    host = build_host()
    port = port or config.Ports.from_env().functions
    try:
        httpd = server.make_server(host, (config.HOST, port))
    except OSError as exc:
        print(f"devstack serve: cannot listen on {config.HOST}:{port} ({exc.strerror}); is another "
              "host running? Stop it or pass --port.", file=sys.stderr)
        return 2
    print(describe(host, f"http://{config.HOST}:{port}"), flush=True)
    print(f"Keys: DEVSTACK_MASTER_KEY, DEVSTACK_HOST_KEY and DEVSTACK_FUNCTION_KEY_<NAME> in {envfile.path()}",
          flush=True)
    host.startup_report()
    # Queue-triggered functions poll their queues beside the HTTP server (devstack/queue_host.py).
    host_json = json.loads((config.REPO_ROOT / "host.json").read_text())
    host.errors.update({name: [why] for name, why in queue_host.start(
        host.functions.values(), host_json, os.environ, threading.Event()).items()})
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        host.pool.shutdown(wait=False, cancel_futures=True)
    return 0
