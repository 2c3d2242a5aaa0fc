"""What every credential (API keys, agent runtime tokens, stream tokens, the admin token) does
with its secret: mint it, parse it, hash it, compare it.

A token is ``<prefix><ULID>_<secret>``: the ULID names the row that holds it (``key_<ULID>``,
``atk_<ULID>``, ``sst_<ULID>``), the secret is 256 random bits (43 URL-safe characters). Only a
sha256 of the secret is stored (with that much entropy a slow password hash adds nothing), and
it is compared in constant time, also when nothing is stored for the id presented, so timing
does not tell which ids exist. The plaintext is returned once, by whoever mints it. The admin
token has no id: it is ``spa_<secret>`` (or whatever ``SPOOL_ADMIN_TOKEN`` says), hashed whole.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.errors import Forbidden, Unauthorized
from engine.ids import new_id

_NOTHING = b"\0" * 32
ADMIN_PREFIX = "spa_"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def matches(stored: bytes | None, presented: bytes) -> bool:
    """Whether ``presented`` (a hash) is ``stored``; False when nothing is stored."""
    return hmac.compare_digest(stored or _NOTHING, presented) and stored is not None


def check_row(row: Any, presented: bytes, what: str) -> None:
    """A credential's row (None: no such id) holds ``presented``, is not revoked, and its tenant
    (the row's ``status``) is active; else Unauthorized, or Forbidden for a suspended tenant."""
    if not matches(row["secret_hash"] if row is not None else None, presented):
        raise Unauthorized(f"invalid {what}")
    if row["revoked_at"] is not None:
        raise Unauthorized(f"this {what} was revoked")
    if row["status"] != "active":
        raise Forbidden("this tenant is suspended")


def mint_admin() -> str:
    """A new admin token (its hash is what is stored)."""
    return f"{ADMIN_PREFIX}{secrets.token_urlsafe(32)}"


class Minted(NamedTuple):
    id: str  # the row's id
    hash: bytes  # what the row stores
    token: str  # the plaintext, handed out once


class Presented(NamedTuple):
    id: str  # the row to look up
    hash: bytes  # to compare with what it stores


@dataclass(frozen=True)
class TokenKind:
    """One kind of id-bearing token: ``prefix`` on the plaintext, ``id_prefix`` on its row."""

    prefix: str
    id_prefix: str
    _shape: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = re.compile(rf"^{re.escape(self.prefix)}([0-9A-Z]{{26}})_([A-Za-z0-9_-]{{43}})$")
        object.__setattr__(self, "_shape", shape)

    def marks(self, token: str) -> bool:
        """Whether ``token`` claims to be of this kind (it may still be malformed)."""
        return token.startswith(self.prefix)

    def mint(self) -> Minted:
        token_id, secret = new_id(self.id_prefix), secrets.token_urlsafe(32)
        ulid = token_id.removeprefix(f"{self.id_prefix}_")
        return Minted(token_id, hash_secret(secret), f"{self.prefix}{ulid}_{secret}")

    def parse(self, token: str) -> Presented | None:
        """The row id and secret hash of a well-formed token; None when it is not one."""
        match = self._shape.match(token)
        if match is None:
            return None
        return Presented(f"{self.id_prefix}_{match[1]}", hash_secret(match[2]))


API_KEY = TokenKind("spk_", "key")
AGENT_TOKEN = TokenKind("spt_", "atk")
STREAM_TOKEN = TokenKind("sst_", "sst")
