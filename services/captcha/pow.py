"""Proof of work for elevated segments: ALTCHA challenges (the `altcha` package), single use.

A challenge has a *level*: level n asks for 2^(n-1) times the work of level 1 (a counter below
`fraud.pow_max_counter`), so the price of a request can rise with its segments' record
(services/codes/fraud.py). The level is in the signed part of the challenge (`data`), so a
solution proves the level it was issued for.

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

    def challenge(self, level: int = 1) -> dict[str, object]:
        """A new signed challenge of `level`, as the JSON object the ALTCHA widget takes."""
        level = max(1, min(level, self._config.pow_max_level))
        counters = self._config.pow_max_counter << (level - 1)
        challenge = altcha.create_challenge(
            ALGORITHM,
            self._config.pow_cost,
            # Deterministic mode: the answer is a random counter the client has to find by
            # trying every counter from 0, so the work is `counters` / 2 on average.
            counter=secrets.randbelow(counters) + 1,
            expires_at=int(time.time()) + self._config.pow_ttl,
            data={"level": level},
            hmac_secret=self._signing_key,
            hmac_key_secret=self._key_signing_key,
        )
        return challenge.to_dict()

    def verify(self, payload: object) -> tuple[str, int] | None:
        """The challenge nonce and level if payload is a valid, unexpired solution of ours."""
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
            parameters = altcha.Payload.from_base64(payload).challenge.parameters
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        nonce, data = parameters.nonce, parameters.data
        level = data.get("level", 1) if isinstance(data, dict) else 1
        if not isinstance(nonce, str) or len(nonce) > 64:
            return None
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 20:
            return None
        return nonce, level

    async def redeem(self, payload: object) -> int:
        """The level of a valid solution, once: the first request that brings it uses it up
        (0 for anything else)."""
        verified = self.verify(payload)
        if verified is None:
            return 0
        nonce, level = verified
        claimed = await self._redis.set(
            keys.pow_used_key(nonce), "1", nx=True, ex=self._config.pow_ttl + 60
        )
        return level if claimed else 0


def _derive(secret: str, label: str) -> str:
    return hmac.new(secret.encode(), label.encode(), hashlib.sha256).hexdigest()


def solve(challenge: dict[str, object], timeout: float = 90.0) -> str:
    """Solve a challenge the way the widget does and return the base64 payload (tests, bench)."""
    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed, timeout=timeout)
    if solution is None:
        raise TimeoutError("proof of work not solved in time")
    return altcha.Payload(parsed, solution).to_base64()
