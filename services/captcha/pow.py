"""Proof of work for elevated segments: ALTCHA challenges (the `altcha` package), single use.

A challenge is HMAC-signed (so a client cannot make its own easy one), expires after
`fraud.pow_ttl` seconds and carries the HMAC of its solution's derived key, so checking a
solution costs two HMACs, not a key derivation. Each solved challenge is accepted once: its
nonce is claimed in Redis with SET NX for the rest of its lifetime (replay protection).
The signing keys are derived from `security.code_hmac_key`, with their own labels, so no new
secret has to be deployed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

import altcha

from services.config import FraudConfig
from services.store import keys
from services.store.redisclient import RedisClient

log = logging.getLogger(__name__)

ALGORITHM = "PBKDF2/SHA-256"  # the widget's default; WebCrypto derives it natively


class ProofOfWork:
    """Issues ALTCHA challenges and redeems solutions once."""

    def __init__(self, redis: RedisClient, config: FraudConfig, secret: str) -> None:
        self._redis = redis
        self._config = config
        self._signing_key = _derive(secret, "altcha-challenge")
        self._key_signing_key = _derive(secret, "altcha-derived-key")

    def challenge(self) -> dict[str, object]:
        """A new signed challenge, as the JSON object the ALTCHA widget takes."""
        challenge = altcha.create_challenge(
            ALGORITHM,
            self._config.pow_cost,
            # Deterministic mode: the answer is a random counter the client has to find by
            # trying every counter from 0, so the work is pow_max_counter / 2 on average.
            counter=secrets.randbelow(self._config.pow_max_counter) + 1,
            expires_at=int(time.time()) + self._config.pow_ttl,
            hmac_secret=self._signing_key,
            hmac_key_secret=self._key_signing_key,
        )
        return challenge.to_dict()

    def verify(self, payload: object) -> str | None:
        """The challenge nonce if payload is a valid, unexpired solution of ours, else None."""
        if not isinstance(payload, str) or not payload or len(payload) > 4096:
            return None
        try:
            result = altcha.verify_solution(
                payload, self._signing_key, hmac_key_secret=self._key_signing_key
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if not result.verified:
            return None
        try:
            nonce = altcha.Payload.from_base64(payload).challenge.parameters.nonce
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return nonce if isinstance(nonce, str) and len(nonce) <= 64 else None

    async def redeem(self, payload: object) -> bool:
        """True once per valid solution: the first request that brings it uses it up."""
        nonce = self.verify(payload)
        if nonce is None:
            return False
        claimed = await self._redis.set(
            keys.pow_used_key(nonce), "1", nx=True, ex=self._config.pow_ttl + 60
        )
        return bool(claimed)


def _derive(secret: str, label: str) -> str:
    return hmac.new(secret.encode(), label.encode(), hashlib.sha256).hexdigest()


def solve(challenge: dict[str, object]) -> str:
    """Solve a challenge the way the widget does and return the base64 payload (tests, bench)."""
    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed)
    if solution is None:
        raise TimeoutError("proof of work not solved in time")
    return altcha.Payload(parsed, solution).to_base64()
