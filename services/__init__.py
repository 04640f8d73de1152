"""Business logic of the registration server: no Tornado request objects in here."""
