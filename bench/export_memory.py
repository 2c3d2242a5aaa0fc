"""Export memory: `spool export --tenant` of a tenant whose log holds N events, for each N, with
the command's peak memory and the server's.

Each size on a fresh database: ``spool serve`` in its own process, one session of N events
(appended through ``EventStore.append``, 1,000 per call, as bench/replay.py loads), then
``python -m spool.cli export --tenant > file`` as a child process. Reported: lines written,
seconds, the command's peak RSS (its own ``ru_maxrss``, from ``wait4``) and the server's peak
(``VmHWM``) before and after. A streamed export holds a page at a time, so neither peak should
grow with N.

    .venv/bin/python bench/export_memory.py [--events 100000,1000000]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    arguments,
    install_uvloop,
    log,
    render_table,
    run_and_finish,
    services,
    spool_run,
)
from replay import load_events, wait_idle


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def export(base_url: str, key: str, into: Path) -> tuple[float, int]:
    """Seconds the command took and its peak RSS (KiB, its own rusage); the export is written
    to ``into``."""
    env = {**os.environ, "SPOOL_BASE_URL": base_url, "SPOOL_API_KEY": key,
           "HOME": str(into.parent)}  # no profile of the user's is read
    started = time.perf_counter()
    with into.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "spool.cli", "export", "--tenant"],
                                 env=env, stdout=out)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"spool export --tenant exited {child.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss


async def one_size(events: int) -> dict[str, Any]:
    with services() as svc, tempfile.TemporaryDirectory(prefix="spool-export-") as scratch:
        async with spool_run(svc, 1) as spool:
            await load_events(spool.database_url, spool.tenant.tenant_id, spool.session_id,
                              events)
            await wait_idle(spool.server.pid)
            server_before = peak_kib(spool.server.pid)
            into = Path(scratch) / "tenant.jsonl"
            seconds, cli_peak = await asyncio.to_thread(export, spool.server.base_url,
                                                         spool.tenant.key, into)
            with into.open("rb") as written:
                lines = sum(1 for _ in written)
            result = {"events": events, "lines": lines, "seconds": round(seconds, 2),
                      "export_peak_mib": round(cli_peak / 1024, 1),
                      "server_peak_before_mib": round(server_before / 1024, 1),
                      "server_peak_after_mib": round(peak_kib(spool.server.pid) / 1024, 1)}
    log(f"  {events:,} events: {lines:,} lines in {seconds:.1f} s, export peak "
        f"{result['export_peak_mib']} MiB, server peak {result['server_peak_before_mib']} -> "
        f"{result['server_peak_after_mib']} MiB")
    return result


async def bench(sizes: list[int]) -> dict[str, Any]:
    return {"bench": "export_memory", "sizes": [await one_size(n) for n in sizes]}


def print_table(result: dict[str, Any]) -> None:
    rows = [[f"{r['events']:,}", f"{r['lines']:,}", f"{r['seconds']:.1f}",
             f"{r['export_peak_mib']}", f"{r['server_peak_before_mib']} -> "
             f"{r['server_peak_after_mib']}"] for r in result["sizes"]]
    log("")
    log(render_table(["events", "lines", "seconds", "spool export peak MiB",
                      "server peak MiB"], rows))


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--events", default="100000,1000000",
                        help="comma-separated log sizes, one run each")
    args = parser.parse_args()
    install_uvloop()
    run_and_finish(bench([int(n) for n in args.events.split(",")]), print_table)


if __name__ == "__main__":
    main()
