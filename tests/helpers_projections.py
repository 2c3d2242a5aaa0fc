"""What the projection view tests share: how their properties run, and a generated log applied
to a projection in slices."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, settings

from engine.log.store import Committed
from engine.projections.runner import Projection

# How their properties run. The examples share the test's database pool (a function-scoped
# fixture); each example writes under ids of its own.
VIEW_SETTINGS = settings(max_examples=60, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])


async def apply_in_slices(conn: Any, projection: Projection, events: Sequence[Committed],
                          cuts: set[int]) -> None:
    """Apply ``events`` cut at ``cuts`` (those past the end ignored), one transaction a slice,
    as the runner applies its batches."""
    bounds = [0, *sorted(c for c in cuts if c < len(events)), len(events)]
    for start, end in itertools.pairwise(bounds):
        async with conn.transaction():
            await projection.apply(conn, events[start:end])
