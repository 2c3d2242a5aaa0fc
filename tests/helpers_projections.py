"""What the projection view tests share: a generated log applied to a projection in slices."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from engine.log.store import Committed
from engine.projections.runner import Projection


async def apply_in_slices(conn: Any, projection: Projection, events: Sequence[Committed],
                          cuts: set[int]) -> None:
    """Apply ``events`` cut at ``cuts`` (those past the end ignored), one transaction a slice,
    as the runner applies its batches."""
    bounds = [0, *sorted(c for c in cuts if c < len(events)), len(events)]
    for start, end in itertools.pairwise(bounds):
        async with conn.transaction():
            await projection.apply(conn, events[start:end])
