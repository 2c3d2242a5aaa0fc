"""Event ids made in bulk (``new_uuids``) are what ``uuid.uuid4`` would make."""

from __future__ import annotations

import uuid

import msgspec

from engine.ids import new_uuids


def test_new_uuids_are_distinct_version_4_uuids() -> None:
    ids = new_uuids(1000)
    assert len(set(ids)) == 1000
    assert {(u.version, u.variant) for u in ids} == {(4, uuid.RFC_4122)}
    assert all(isinstance(u, uuid.UUID) and uuid.UUID(str(u)) == u for u in ids)
    assert msgspec.json.encode(ids[0]) == b'"%s"' % str(ids[0]).encode()
    assert new_uuids(0) == []
