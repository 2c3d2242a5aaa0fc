"""What every credential (API keys, agent runtime tokens, stream tokens, the admin token) does
with its secret: only a sha256 of it is stored, and it is compared in constant time, also when
nothing is stored for the id presented, so timing does not tell which ids exist."""

from __future__ import annotations

import hashlib
import hmac

_NOTHING = b"\0" * 32


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def matches(stored: bytes | None, presented: bytes) -> bool:
    """Whether ``presented`` (a hash) is ``stored``; False when nothing is stored."""
    return hmac.compare_digest(stored or _NOTHING, presented) and stored is not None
