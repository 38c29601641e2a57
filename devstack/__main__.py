"""`python -m devstack up | down | serve | status`."""

from __future__ import annotations

import argparse
import sys

from devstack import stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="The local cloud for crosscloud: Azurite over HTTPS with OAuth, a local "
        "managed-identity endpoint, and moto with IAM enforcement and a validating STS. "
        "Loopback only; state and settings under .devstack/ (DEVSTACK_DIR overrides).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start and provision the local cloud; write .devstack/env")
    up.add_argument("--token-ttl", type=int, default=3600,
                    help="lifetime in seconds of the identity endpoint's tokens (default 3600)")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="say whether the local cloud is running")
    serve = sub.add_parser("serve", help="serve function_app over HTTP the way the Functions host does "
                           "(its routing, keys and admin API; see docs/serve.md)")
    serve.add_argument("--port", type=int, default=None,
                       help="port on 127.0.0.1 (default 7071, shifted by DEVSTACK_PORT_OFFSET)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            stack.up(token_ttl=args.token_ttl)
        elif args.command == "down":
            print("devstack stopped." if stack.down() else "devstack was not running.")
        elif args.command == "status":
            procs = stack.running()
            print(f"running: {procs}" if procs else "not running")
            return 0 if procs else 1
        elif args.command == "serve":
            from devstack import serve as serve_mod

            return serve_mod.main(port=args.port)
    except stack.StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
