"""Operator command for the keys that sign access tokens: make, rotate, list.

    python -m tools.keys [--config config.yml] [--keyring PATH] new
    python -m tools.keys [--config config.yml] [--keyring PATH] rotate [--publish-ahead 600]
    python -m tools.keys [--config config.yml] [--keyring PATH] list

The keyring is tokens.keyring of the configuration (SMSREG_* overrides apply) unless --keyring
names one. Rotation without downtime: `new` publishes a next key in the JWKS (the servers
re-read the keyring within seconds); once verifiers have fetched it (--publish-ahead, default
10 minutes), `rotate` makes it sign and retires the old one, which keeps verifying until its
tokens have expired; a later `rotate` drops it. Copy the keyring directory to every host.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from server import DEFAULT_CONFIG
from services.config import ConfigError, load_config
from services.tokens.keyring import KeyringError, add_key, read_entries, rotate

PUBLISH_AHEAD = 600  # jose's createRemoteJWKSet caches 10 minutes, PyJWKClient 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.keys", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    parser.add_argument("--keyring", help="keyring file (default: tokens.keyring)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("new", help="make a key: next (published, not signing), or active")
    rotating = commands.add_parser("rotate", help="the next key signs, the active one retires")
    rotating.add_argument("--publish-ahead", type=int, default=PUBLISH_AHEAD, metavar="SECONDS")
    commands.add_parser("list", help="the keys of the ring and their states")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    keyring = args.keyring or config.tokens.keyring
    if not keyring:
        print("no keyring: set tokens.keyring or pass --keyring PATH", file=sys.stderr)
        return 2
    path = Path(keyring)
    if args.command == "new":
        entry = add_key(path)
        print(f"{entry['kid']}: {entry['state']} ({path.parent / str(entry['file'])})")
    elif args.command == "rotate":
        active, retired, removed = rotate(path, config.tokens.access_ttl, args.publish_ahead)
        print(f"{active}: active")
        if retired:
            print(f"{retired}: retired (verifies until its tokens have expired)")
        for kid in removed:
            print(f"{kid}: removed from the ring (its PEM file may be shredded)")
    else:
        now = int(time.time())
        print(f"{'kid':<20} {'state':<8} {'age':>9} {'retired':>9}")
        for entry in read_entries(path):
            retired = entry.get("retired")
            since = f"{now - int(str(retired))}s" if retired is not None else "-"
            age = f"{now - int(str(entry.get('created')))}s"
            print(f"{entry.get('kid')!s:<20} {entry.get('state')!s:<8} {age:>9} {since:>9}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except KeyringError as exc:
        print(f"keyring: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
