"""The keys that sign access tokens: a keyring file naming PEM files, each key with a kid.

A keyring is a JSON file (written by `python -m tools.keys`)::

    {"keys": [{"kid": "20260521-3fa9c2d1", "file": "20260521-3fa9c2d1.pem",
               "state": "active", "created": 1779321600, "retired": null}]}

Each key is an ECDSA P-256 private key (ES256), in a PEM file beside the keyring, and is in
one of three states: `next` (published in the JWKS, not yet signing), `active` (signs; exactly
one) and `retired` (published and verifying, no longer signing, until the tokens it signed
have expired). Rotation without downtime is `new` (a next key), then once verifiers have
fetched the JWKS again, `rotate` (next signs, active retires). Every key of the ring verifies,
a next key too: during a rolling rotation another instance may already sign with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES256"
NEXT, ACTIVE, RETIRED = "next", "active", "retired"
STATES = (NEXT, ACTIVE, RETIRED)
# How long after a rotation an instance may still sign with the retired key: the servers
# re-read the keyring every few seconds (TokenService.reload_keyring), so a minute is ample.
SIGNING_LAG = 60
# P-256's group order: a derived scalar must lie in [1, order - 1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class KeyringError(Exception):
    """A keyring that cannot be used: missing, malformed, or without exactly one active key."""


@dataclass(frozen=True)
class SigningKey:
    """One key of the ring."""

    kid: str
    state: str
    created: int
    retired: int | None
    private_key: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, object]:
        """The public half as a JWK (RFC 7517), with its kid, use and algorithm."""
        jwk: dict[str, object] = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


@dataclass(frozen=True)
class Keyring:
    """Every key of the ring; one of them active."""

    keys: tuple[SigningKey, ...]

    @property
    def active(self) -> SigningKey:
        return next(key for key in self.keys if key.state == ACTIVE)

    def verifying(self, kid: object) -> ec.EllipticCurvePublicKey | None:
        """The public key that verifies tokens of `kid`, None for a kid not in the ring."""
        for key in self.keys:
            if key.kid == kid:
                return key.private_key.public_key()
        return None

    def jwks(self) -> dict[str, object]:
        """The JSON Web Key Set every verifier fetches: the public half of every key."""
        return {"keys": [key.public_jwk() for key in self.keys]}


def development_keyring(secret: str) -> Keyring:
    """Development only (tokens.keyring empty): one key derived from security.cookie_secret,
    so every process and instance of a devstack signs and verifies alike without a file.
    Production refuses an empty tokens.keyring (services/config/checks.py)."""
    seed = HKDF(hashes.SHA256(), 32, salt=None, info=b"smsreg development token key").derive(
        secret.encode()
    )
    private_key = ec.derive_private_key(int.from_bytes(seed) % (P256_ORDER - 1) + 1, ec.SECP256R1())
    public = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = "dev-" + hashlib.sha256(public).hexdigest()[:12]
    return Keyring((SigningKey(kid, ACTIVE, 0, None, private_key),))


def read_entries(path: Path) -> list[dict[str, object]]:
    """The keyring file's entries, as written (no key loaded)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyringError(f"cannot read keyring {str(path)!r}: {exc}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise KeyringError(f"keyring {str(path)!r} has no list of keys")
    return entries


def load_keyring(path: Path) -> Keyring:
    """The keyring at `path` with its keys loaded; KeyringError says what is wrong."""
    keys = tuple(_load_key(path.parent, entry) for entry in read_entries(path))
    if [key.state for key in keys].count(ACTIVE) != 1:
        raise KeyringError(f"keyring {str(path)!r} needs exactly one active key (tools.keys)")
    if len({key.kid for key in keys}) != len(keys):
        raise KeyringError(f"keyring {str(path)!r} repeats a kid")
    return Keyring(keys)


def _load_key(directory: Path, entry: dict[str, object]) -> SigningKey:
    kid, state, file = entry.get("kid"), entry.get("state"), entry.get("file")
    created, retired = entry.get("created"), entry.get("retired")
    if not (isinstance(kid, str) and kid and isinstance(file, str) and state in STATES):
        raise KeyringError(f"keyring entry {entry!r} needs a kid, a file and a state")
    if not isinstance(created, int) or not (retired is None or isinstance(retired, int)):
        raise KeyringError(f"keyring entry {kid!r}: created and retired are Unix times")
    try:
        private_key = serialization.load_pem_private_key((directory / file).read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyringError(f"key {kid!r}: cannot load {file!r}: {exc}") from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise KeyringError(f"key {kid!r}: {file!r} is not a P-256 private key ({ALGORITHM})")
    return SigningKey(kid, str(state), created, retired, private_key)


def write_entries(path: Path, entries: list[dict[str, object]]) -> None:
    """Replace the keyring file atomically (a server reading it sees the old or the new)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    temporary.write_text(json.dumps({"keys": entries}, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def add_key(path: Path, now: float | None = None) -> dict[str, object]:
    """Make a new key beside the keyring and add it: `next`, or `active` in an empty ring."""
    now = int(time.time() if now is None else now)
    entries = read_entries(path) if path.exists() else []
    kid = f"{time.strftime('%Y%m%d', time.gmtime(now))}-{secrets.token_hex(4)}"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path.parent / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    state = NEXT if any(entry.get("state") == ACTIVE for entry in entries) else ACTIVE
    entry: dict[str, object] = {
        "kid": kid,
        "file": f"{kid}.pem",
        "state": state,
        "created": now,
        "retired": None,
    }
    write_entries(path, [*entries, entry])
    return entry


def rotate(
    path: Path, access_ttl: int, publish_ahead: int, now: float | None = None
) -> tuple[str, str, list[str]]:
    """The oldest next key signs, the active one retires, retired keys whose tokens have all
    expired (access_ttl and SIGNING_LAG after their retirement) leave the ring (their PEM
    files stay, for the operator to shred).

    Refused unless the next key has been published for `publish_ahead` seconds, so that
    verifiers caching the JWKS have it before any token signed with it reaches them.
    Returns (new active kid, retired kid, removed kids).
    """
    now = int(time.time() if now is None else now)
    entries = read_entries(path)
    waiting = [entry for entry in entries if entry.get("state") == NEXT]
    if not waiting:
        raise KeyringError("no next key to rotate to: run `python -m tools.keys new` first")
    promoted = min(waiting, key=lambda entry: int(str(entry.get("created"))))
    age = now - int(str(promoted["created"]))
    if age < publish_ahead:
        raise KeyringError(
            f"key {promoted['kid']!r} has been published for {age} s only; rotate after "
            f"{publish_ahead} s, once verifiers have fetched it (or --publish-ahead 0)"
        )
    expired_before = now - access_ttl - SIGNING_LAG
    removed = [
        str(entry["kid"])
        for entry in entries
        if entry.get("state") == RETIRED and int(str(entry.get("retired"))) <= expired_before
    ]
    retired = ""
    for entry in entries:
        if entry.get("state") == ACTIVE:
            entry["state"], entry["retired"], retired = RETIRED, now, str(entry["kid"])
    promoted["state"] = ACTIVE
    write_entries(path, [entry for entry in entries if entry["kid"] not in removed])
    return str(promoted["kid"]), retired, removed
