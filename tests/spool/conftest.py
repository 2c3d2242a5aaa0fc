"""Fixtures of the tests that run ``spool`` as real processes, and the API fixtures of
tests/api (``api``: the app in-process; ``live``: a uvicorn server on a free port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import api, live
from tests.helpers_processes import Spawner, scratch_dir

__all__ = ["api", "live", "scratch", "spawn"]


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """Starts ``spool serve`` processes; stops them, and anything left in their data dirs, at
    teardown. Each server's output is printed then: the report of a failed test shows it."""
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.teardown()
        for server in spawner.servers:
            print(f"=== spool serve {server.data_dir.name} (pid {server.pid})\n{server.output()}")


@pytest.fixture
def scratch(spawn: Spawner) -> Path:
    """A fresh dir outside pytest's tmp dir (see ``scratch_dir``), removed once the servers
    started in it are stopped."""
    base = scratch_dir()
    spawn.remove.append(base)
    return base
