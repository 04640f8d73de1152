"""The user table (ih_user_profile): the queries the flows need, nothing else."""

from services.db import Database


class UserRepository:
    """Reads and writes ih_user_profile."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def mobile_exists(self, mobile: str) -> bool:
        """True if a user is registered with this mobile."""
        row = await self._db.fetch_one(
            "SELECT 1 FROM ih_user_profile WHERE mobile = %s LIMIT 1", (mobile,)
        )
        return row is not None
