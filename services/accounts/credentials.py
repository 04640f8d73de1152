"""What follows a change of credentials: the one place where a new password (changed or
reset) or a new mobile ends what the old credentials granted.

That is every login session of the user and every refresh-token family (API clients),
ended in one step (services/accounts/sessions.py `end_all`); the caller then starts a new
session for the browser that made the change (handlers' log_in), so the person who changed
the credentials stays logged in and every other device and app is logged out. A later kind
of credential-derived grant is revoked here too, and so by every flow that changes
credentials.
"""

from __future__ import annotations

from services.accounts.sessions import SessionStore


async def credentials_changed(sessions: SessionStore, user_id: int) -> int:
    """End every session of the user (the caller renews its own); returns how many ended."""
    return await sessions.end_all(user_id)
