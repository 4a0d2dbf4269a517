"""API token secrets: `adreg_` + 43 base62 characters (256 random bits), recognisable by secret
scanners and in logs by their prefix. Only the sha256 of a secret is stored.

sha256 and not a password hash (bcrypt, argon2): those slow down guessing a low-entropy password;
a 256-bit random secret cannot be guessed, so a slow hash would only add its cost (~100 ms) to
every request. The stored hash is compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "adreg_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LEN = 43
"""62**43 > 2**256: every 256-bit value fits."""
DISPLAY_LEN = len(PREFIX) + 8
"""How much of a secret a listing shows (and the database indexes to find its row)."""
TOKEN_RE = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{BODY_LEN}}}")


def generate() -> str:
    """A new secret, from the OS's CSPRNG."""
    n = secrets.randbits(256)
    digits = []
    for _ in range(BODY_LEN):
        n, r = divmod(n, 62)
        digits.append(ALPHABET[r])
    return PREFIX + "".join(digits)


def is_well_formed(secret: str) -> bool:
    return TOKEN_RE.fullmatch(secret) is not None


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_LEN]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    """Whether `secret` hashes to `stored_hash`, in time independent of where they differ."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_bearer(header: str | None) -> str | None:
    """The credential of `Authorization: Bearer <token>` (scheme case-insensitive), None when the
    header is absent; "" when it is present but not a bearer credential."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()
