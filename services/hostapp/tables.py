"""The user table of each host app: which columns our flows read and write, what a new row
must also carry for the host's own code to accept it, and the start-up check that the table
is there as expected (nothing of it is ever dropped, renamed or retyped).

ihome (Flask-SQLAlchemy `User`, ih_user_profile) is also our own table (sql/schema.sql);
meiduo's is Django's AbstractUser plus `mobile` (tb_users); news's is `info_user`.
SQLAlchemy's and Django's defaults are applied by the ORM, not the database, so a row we
insert states them: the `defaults` below are what the host's model would have written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from services.store.db import Database


class HostTableError(RuntimeError):
    """The host's user table is missing, lacks a column or the unique index we rely on."""


@dataclass(frozen=True)
class UserTable:
    table: str
    name_column: str  # the login name: ihome `name`, meiduo `username`, news `nick_name`
    password_column: str
    created_column: str
    avatar_column: str | None = None
    last_login_column: str | None = None  # written on each login, as the host's login does
    active_column: str | None = None  # Django's is_active: 0 cannot log in
    # The time the host writes: Django (USE_TZ) naive UTC, the Flask apps local time.
    now: str = "NOW()"
    # Columns a new row states (only those the table has): column -> SQL value.
    defaults: tuple[tuple[str, str], ...] = ()
    # Personal columns a purged account clears: column -> SQL value.
    cleared: tuple[tuple[str, str], ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """The columns the flows cannot do without."""
        return ("id", self.name_column, "mobile", self.password_column, self.created_column)

    def select_list(self) -> str:
        """The columns of services.accounts.users.User, in its order."""
        avatar = self.avatar_column or "NULL"
        return (
            f"id, {self.name_column}, mobile, {self.password_column}, {avatar}, "
            f"{self.created_column}"
        )


IHOME = UserTable(
    table="ih_user_profile",
    name_column="name",
    password_column="password_hash",
    created_column="create_time",
    avatar_column="avatar_url",
    defaults=(("create_time", "NOW()"), ("update_time", "NOW()")),
    cleared=(("real_name", "NULL"), ("id_card", "NULL"), ("avatar_url", "NULL")),
)
MEIDUO = UserTable(
    table="tb_users",
    name_column="username",
    password_column="password",
    created_column="date_joined",
    last_login_column="last_login",
    active_column="is_active",
    now="UTC_TIMESTAMP(6)",
    defaults=(
        ("is_superuser", "0"),
        ("first_name", "''"),
        ("last_name", "''"),
        ("email", "''"),
        ("is_staff", "0"),
        ("is_active", "1"),
        ("date_joined", "UTC_TIMESTAMP(6)"),
        ("email_active", "0"),
    ),
    cleared=(("first_name", "''"), ("last_name", "''"), ("email", "''"), ("is_active", "0")),
)
NEWS = UserTable(
    table="info_user",
    name_column="nick_name",
    password_column="password_hash",
    created_column="create_time",
    avatar_column="avatar_url",
    last_login_column="last_login",
    defaults=(
        ("is_admin", "0"),
        ("last_login", "NOW()"),
        ("create_time", "NOW()"),
        ("update_time", "NOW()"),
    ),
    cleared=(("avatar_url", "NULL"), ("signature", "NULL"), ("gender", "NULL")),
)
TABLES = {"standalone": IHOME, "ihome": IHOME, "meiduo": MEIDUO, "news": NEWS}


async def fitted_table(db: Database, table: UserTable) -> UserTable:
    """The table as this database has it: defaults and cleared columns reduced to the
    columns that exist, or HostTableError (one line: start-up exits 2 on it)."""
    rows = await db.fetch_all(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (table.table,),
    )
    columns = {str(row[0]).lower() for row in rows}
    if not columns:
        raise HostTableError(f"the host app's user table {table.table} does not exist")
    missing = [c for c in table.required if c not in columns]
    if missing:
        raise HostTableError(
            f"the host app's user table {table.table} lacks the column(s) {', '.join(missing)}"
        )
    unique = await db.fetch_all(
        "SELECT index_name FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND table_name = %s AND non_unique = 0"
        " GROUP BY index_name HAVING COUNT(*) = 1 AND MAX(column_name) = 'mobile'",
        (table.table,),
    )
    if not unique:
        raise HostTableError(
            f"{table.table}.mobile has no UNIQUE index, which decides concurrent sign-ups; "
            f"add it: ALTER TABLE {table.table} ADD UNIQUE KEY uq_{table.table}_mobile (mobile)"
            " (docs/INTEGRATION.md)"
        )
    return dataclasses.replace(
        table,
        avatar_column=table.avatar_column if table.avatar_column in columns else None,
        last_login_column=table.last_login_column if table.last_login_column in columns else None,
        active_column=table.active_column if table.active_column in columns else None,
        defaults=tuple((c, v) for c, v in table.defaults if c in columns),
        cleared=tuple((c, v) for c, v in table.cleared if c in columns),
    )
