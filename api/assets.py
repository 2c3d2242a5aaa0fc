"""The files under ``api/static/`` (shipped in the wheel), as browsers get them: each with its
content type and an ETag (a hash of its bytes), read once per process. ``spool.js`` is served
with the engine's event types filled in, so the module's list cannot drift from the server's."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import msgspec

from engine.events import EVENT_TYPES

ROOT = Path(__file__).parent / "static"

# What spool.js holds where the server writes the list of event types (one place in the file).
EVENT_TYPES_MARK = b"[/* the event types, filled in by the server */]"

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, NOTICE, VERSION
}


class Asset(msgspec.Struct, frozen=True):
    body: bytes
    media_type: str
    etag: str  # quoted, as the header carries it


def find(path: str) -> Asset | None:
    """The asset at ``path`` (relative to api/static/), or None. Only the files found there at
    start are served: a path is looked up, never joined onto the file system."""
    return _assets().get(path)


@functools.cache
def _assets() -> dict[str, Asset]:
    found = {}
    for file in sorted(ROOT.rglob("*")):
        media_type = _TYPES.get(file.suffix)
        if file.is_file() and media_type is not None:
            name = file.relative_to(ROOT).as_posix()
            found[name] = _asset(_filled(name, file.read_bytes()), media_type)
    return found


def _asset(body: bytes, media_type: str) -> Asset:
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _filled(name: str, body: bytes) -> bytes:
    if name != "spool.js":
        return body
    if body.count(EVENT_TYPES_MARK) != 1:
        raise RuntimeError(f"api/static/spool.js must hold {EVENT_TYPES_MARK!r} once")
    return body.replace(EVENT_TYPES_MARK, json.dumps(sorted(EVENT_TYPES)).encode())


def not_modified(asset: Asset, if_none_match: str | None) -> bool:
    """Whether an ``If-None-Match`` header names the asset's ETag (weakly, as RFC 9110 says
    for GET), or is ``*``."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or asset.etag in tags
