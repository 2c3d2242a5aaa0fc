"""The files under ``api/static/`` (shipped in the wheel), as browsers get them: each with its
content type and an ETag (a hash of its bytes). ``spool.js`` is served with the engine's event
types filled in, so the module's list cannot drift from the server's.

A file is read again when its modification time or size changed (one ``stat`` per request), so
a page of the console is changed by editing its file and reloading the browser; a name not
known is looked for again at most once a second (a new file), never by joining it onto the
file system."""

from __future__ import annotations

import hashlib
import json
import time
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
_RESCAN_SECONDS = 1.0  # how often a miss may list the folder again


class Asset(msgspec.Struct, frozen=True):
    body: bytes
    media_type: str
    etag: str  # quoted, as the header carries it
    stamp: tuple[int, int] = (0, 0)  # the file's mtime (ns) and size when read


class Files:
    """The files found under ``root`` by name, and each one's bytes as last read."""

    def __init__(self, root: Path, rescan_seconds: float = _RESCAN_SECONDS) -> None:
        self._root = root
        self._rescan_seconds = rescan_seconds
        self._paths: dict[str, Path] = {}
        self._read: dict[str, Asset] = {}
        self._scanned = float("-inf")

    def find(self, name: str) -> Asset | None:
        file = self._paths.get(name)
        if file is None and time.monotonic() - self._scanned >= self._rescan_seconds:
            self._scan()
            file = self._paths.get(name)
        if file is None:
            return None
        try:
            stat = file.stat()
        except FileNotFoundError:  # removed since the scan
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        asset = self._read.get(name)
        if asset is None or asset.stamp != stamp:
            asset = _asset(_filled(name, file.read_bytes()), _TYPES[file.suffix], stamp)
            self._read[name] = asset
        return asset

    def _scan(self) -> None:
        found = {}
        for file in sorted(self._root.rglob("*")):
            if file.is_file() and file.suffix in _TYPES:
                found[file.relative_to(self._root).as_posix()] = file
        self._paths = found  # replaced whole
        self._scanned = time.monotonic()


_files = Files(ROOT)


def find(path: str) -> Asset | None:
    """The asset at ``path`` (relative to api/static/), or None. Only files found there are
    served: a path is looked up among them, never joined onto the file system."""
    return _files.find(path)


def _asset(body: bytes, media_type: str, stamp: tuple[int, int]) -> Asset:
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', stamp)


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
