"""Minting, parsing, hashing and comparing credentials (engine/auth/credentials.py)."""

from __future__ import annotations

import hashlib

import pytest

from engine.auth.credentials import (
    AGENT_TOKEN,
    API_KEY,
    STREAM_TOKEN,
    TokenKind,
    hash_secret,
    matches,
    mint_admin,
)
from engine.ids import is_id


@pytest.mark.parametrize(("kind", "prefix", "id_prefix"), [
    (API_KEY, "spk_", "key"), (AGENT_TOKEN, "spt_", "atk"), (STREAM_TOKEN, "sst_", "sst")])
def test_a_minted_token_parses_back_to_its_row(kind: TokenKind, prefix: str,
                                                id_prefix: str) -> None:
    minted = kind.mint()
    assert is_id(minted.id, id_prefix)
    assert minted.token.startswith(prefix) and kind.marks(minted.token)
    ulid, secret = minted.token[4:30], minted.token[31:]
    assert minted.id == f"{id_prefix}_{ulid}" and len(secret) == 43
    assert minted.hash == hashlib.sha256(secret.encode()).digest()
    assert kind.parse(minted.token) == (minted.id, minted.hash)


def test_a_token_of_another_kind_or_shape_does_not_parse() -> None:
    token = API_KEY.mint().token
    assert AGENT_TOKEN.parse(token) is None and not AGENT_TOKEN.marks(token)
    assert API_KEY.parse(token[:-1]) is None
    assert API_KEY.parse(token + "x") is None
    assert API_KEY.parse("spk_" + token[4:].lower()) is None


def test_the_secret_is_hashed_with_sha256_and_compared_only_to_something_stored() -> None:
    stored = hash_secret("s3cret")
    assert stored == hashlib.sha256(b"s3cret").digest()
    assert matches(stored, hash_secret("s3cret"))
    assert not matches(stored, hash_secret("other"))
    assert not matches(None, b"\0" * 32)  # nothing stored never matches, not even zeroes


def test_an_admin_token_is_spa_and_random() -> None:
    first, second = mint_admin(), mint_admin()
    assert first.startswith("spa_") and len(first) == 4 + 43 and first != second
