"""Every code block of README.md runs, against a live ``spool serve``, so an example cannot rot.

The blocks run in the order the README gives them, as a reader would type them: a ``sh`` block
in bash (``set -euo pipefail``), the variables it sets kept for the blocks after it (``set -a``
exports every assignment, ``env`` hands them on), a ``python`` block as a script with that
environment. The server is started here (embedded Postgres and Valkey, the README's admin token),
so the README's ``127.0.0.1:8700`` is replaced by its address, ``HOME`` is a scratch dir (the
CLI's profiles land there) and ``spool`` is the venv's. A block that cannot run here (it starts
the server, or runs until stopped) says so on the line before it: ``<!-- not run: why -->``.
Blocks in other languages (``console``, ``js``, ...) are shown output or tested elsewhere
(tests/browser/).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.events import EVENT_TYPES
from tests.helpers_processes import Spawner, serve_env

README = Path(__file__).resolve().parents[2] / "README.md"
ADMIN_TOKEN = "dev-admin-token-change-me"
README_URL = "http://127.0.0.1:8700"
RUNS = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python"}
NOT_RUN = re.compile(r"^<!-- not run: (.+) -->$")
BLOCK_SECONDS = 120


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    kind: str  # sh, python or another info string
    code: str
    not_run: str | None  # why not, from the marker on the line before


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^\s*```(\S*)", lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.match(before.strip())
        found.append(Block(index + 1, fence.group(1), "\n".join(lines[index + 1:end]) + "\n",
                           marker.group(1) if marker else None))
        index = end + 1
    return found


def test_the_readme_marks_why_a_block_is_not_run() -> None:
    found = blocks(README.read_text())
    runnable = [b for b in found if RUNS.get(b.kind)]
    assert len([b for b in runnable if b.not_run is None]) >= 8, "the README runs little"
    for block in found:
        assert block.not_run is None or RUNS.get(block.kind), (
            f"README.md:{block.line}: a {block.kind or 'plain'} block is never run; "
            "its 'not run' marker says nothing")


def test_the_readme_lists_every_event_type_a_page_can_listen_for() -> None:
    text = README.read_text()
    browser = text[text.index("### Streams in a browser"):]
    assert [t for t in sorted(EVENT_TYPES) if f"`{t}`" not in browser] == []


def _run(block: Block, code: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Run one block; the environment after it (a shell block's variables)."""
    state = cwd / ".readme-env"
    state.unlink(missing_ok=True)  # a block that exits early hands on nothing stale
    assert "8700" not in block.code.replace(README_URL, ""), (
        f"README.md:{block.line}: an address the test does not replace (only {README_URL})")
    if RUNS[block.kind] == "sh":
        script = f"set -euo pipefail\nset -a\n{code}\nenv -0 > {state}\n"
        argv = ["bash", "-c", script]
    else:
        path = cwd / f"readme_{block.line}.py"
        path.write_text(code)
        argv = [sys.executable, str(path)]
    try:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=BLOCK_SECONDS)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"README.md:{block.line}: still running after {BLOCK_SECONDS} s"
                             f"\n{code}\n--- stdout:\n{exc.stdout}\n--- stderr:\n{exc.stderr}"
                             ) from None
    assert done.returncode == 0, (
        f"README.md:{block.line}: exit {done.returncode}\n{code}\n--- stdout:\n{done.stdout}"
        f"\n--- stderr:\n{done.stderr}")
    if RUNS[block.kind] != "sh":
        return env
    assert state.exists(), f"README.md:{block.line}: the block ended before its last line"
    pairs = (item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
    return dict(pairs)


def test_every_block_of_the_readme_runs_against_a_live_server(
    spawn: Spawner, scratch: Path,
) -> None:
    data_dir, home = scratch / "data", scratch / "home"
    home.mkdir()
    env = serve_env(data_dir, SPOOL_ADMIN_TOKEN=ADMIN_TOKEN, SPOOL_LOG_LEVEL="warning")
    server = spawn(data_dir, cwd=scratch, env=env)
    url = server.wait_ready()
    bin_dir = str(Path(sys.executable).parent)
    env = {key: value for key, value in env.items() if not key.startswith("XDG_")}  # ~ only
    env = {**env, "HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    ran = 0
    for block in blocks(README.read_text()):
        if not RUNS.get(block.kind) or block.not_run is not None:
            continue
        env = _run(block, block.code.replace(README_URL, url), env, scratch)
        ran += 1
    assert ran >= 8
