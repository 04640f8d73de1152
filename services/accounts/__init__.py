"""The phone account: users, sessions, passwords, login throttling, mobiles."""
