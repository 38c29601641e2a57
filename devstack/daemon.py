"""The stack's Python process: the managed-identity endpoint and the AWS emulator.

Both run in one process so moto can be extended in-process (see `devstack.aws`). Started
in the background by `devstack up`; it provisions AWS, turns IAM enforcement on, writes
`ready.json`, and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.daemon")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--aws-port", type=int, required=True)
    parser.add_argument("--identity-port", type=int, required=True)
    parser.add_argument("--identity-header", required=True)
    parser.add_argument("--token-ttl", type=int, default=3600)
    args = parser.parse_args(argv)

    # moto reads this at import; enforcement is switched on after provisioning.
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    from devstack import aws, config, identity_server, provision, s3_listing

    key = identity_server.load_or_create_signing_key(args.state / "identity" / "signing-key.pem")
    identity_url = f"http://{config.HOST}:{args.identity_port}"
    service = identity_server.IdentityService(key, args.identity_header, identity_url, args.token_ttl)
    identity_server.register_stats(aws.stats_snapshot)
    id_server = identity_server.start(service, args.identity_port)

    aws.install(aws.OidcDiscovery({config.ISSUER: f"{identity_url}/{config.TENANT_ID}"}))
    s3_listing.install()
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    moto = ThreadedMotoServer(ip_address=config.HOST, port=args.aws_port, verbose=False)
    moto.start()
    admin = provision.provision_aws(f"http://{config.HOST}:{args.aws_port}", args.state)
    ActionAuthenticatorMixin.request_count = 0
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # IAM enforcement on from here

    admin_file = args.state / "aws-admin.json"
    admin_file.touch(mode=0o600)
    admin_file.write_text(json.dumps(admin))
    (args.state / "ready.json").write_text(json.dumps({"pid": os.getpid()}))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    moto.stop()
    id_server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
