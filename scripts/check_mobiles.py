"""List stored mobiles that are not canonical, and numbers that more than one account holds.

Before this server canonicalised mobiles (services/accounts/mobiles.py), a database fed by other
code could hold one number in several spellings (`+86 138…`, `138 1234 5678`, full-width digits):
one person, two accounts. Run this against such a database before switching over:

    .venv/bin/python -m scripts.check_mobiles [--config config.yml] [--table ih_user_profile]

It only reads. Output: one line per non-canonical row (id, stored value, canonical form or
"invalid"), then one line per canonical number held by several rows. Exit code 0 when the
table is clean, 1 when something needs a person's decision (docs/OPERATIONS.md, "Migrating
an existing database"), 2 on a usage or connection problem.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

import pymysql

from services.accounts.mobiles import canonical_mobile
from services.config import ConfigError, load_config

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def find_problems(rows: list[tuple[object, str]]) -> tuple[list[str], list[str]]:
    """(lines about non-canonical rows, lines about numbers held by several rows)."""
    odd, holders = [], collections.defaultdict(list)
    for row_id, stored in rows:
        canonical = canonical_mobile(stored)
        if canonical != stored:
            odd.append(
                f"non-canonical id={row_id} stored={stored!r} canonical={canonical or 'invalid'}"
            )
        if canonical:
            holders[canonical].append(row_id)
    duplicates = [
        f"duplicate {mobile} ids={','.join(str(i) for i in ids)}"
        for mobile, ids in sorted(holders.items())
        if len(ids) > 1
    ]
    return odd, duplicates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yml", help="the server's YAML config")
    parser.add_argument("--table", default="ih_user_profile")
    parser.add_argument("--id-column", default="id")
    parser.add_argument("--mobile-column", default="mobile")
    args = parser.parse_args(argv)
    names = (args.table, args.id_column, args.mobile_column)
    if not all(IDENTIFIER_RE.fullmatch(name) for name in names):
        print("table and column names must be plain identifiers", file=sys.stderr)
        return 2
    try:
        mysql = load_config(args.config).mysql
        connection = pymysql.connect(
            host=mysql.host,
            port=mysql.port,
            user=mysql.user,
            password=mysql.password,
            database=mysql.database,
            connect_timeout=mysql.connect_timeout,
            charset="utf8mb4",
        )
    except (ConfigError, pymysql.err.Error) as exc:
        print(f"check_mobiles: {exc}", file=sys.stderr)
        return 2
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"SELECT `{args.id_column}`, `{args.mobile_column}` FROM `{args.table}`")
            odd, duplicates = find_problems(list(cursor.fetchall()))
    except pymysql.err.Error as exc:
        print(f"check_mobiles: {exc}", file=sys.stderr)
        return 2
    for line in odd + duplicates:
        print(line)
    print(f"{len(odd)} non-canonical, {len(duplicates)} numbers held by several rows")
    return 1 if odd or duplicates else 0


if __name__ == "__main__":
    sys.exit(main())
