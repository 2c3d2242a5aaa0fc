"""schemathesis, a tool nobody here wrote, over every operation of docs/openapi.json against a
live app (real uvicorn on a real socket, the embedded Postgres and Valkey), as an owner, a
viewer and without credentials, with all its checks: no 500, every status, header, content type
and body as the document declares, valid input accepted and invalid input refused, SSE frames
that fit. ``make test`` runs a few examples per operation; ``make fuzz`` (``SPOOL_FUZZ=1``)
runs many more and the stateful phase, which follows the document's links (create an agent,
then read and patch it; create a session, then post to it; ...)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import LiveApp

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.json"
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")  # NDJSON bodies
ST = Path(sys.executable).with_name("st")

FUZZ = os.environ.get("SPOOL_FUZZ") == "1"
EXAMPLES = os.environ.get("SPOOL_FUZZ_EXAMPLES", "50" if FUZZ else "2")
# In `make test` (about 2 minutes on 2 cores): the owner gets the coverage phase (every
# boundary and every kind of invalid value of each parameter, ~2000 requests); the viewer
# and the anonymous caller, refused early, a few random examples per operation.
PHASES = {
    "owner": "examples,coverage,fuzzing,stateful" if FUZZ else "examples,coverage,fuzzing",
    "viewer": "examples,coverage,fuzzing,stateful" if FUZZ else "examples,fuzzing",
    "anonymous": "examples,coverage,fuzzing" if FUZZ else "examples,fuzzing",
}
CALLERS = tuple(PHASES)


@pytest.fixture(scope="module")
def keys(live_app: LiveApp) -> dict[str, str | None]:
    tenant = live_app.tenant("fuzzed")
    return {"owner": live_app.key(tenant, "owner"), "viewer": live_app.key(tenant, "viewer"),
            "anonymous": None}


@pytest.mark.parametrize("caller", CALLERS)
def test_schemathesis_finds_no_failure(caller: str, live_app: LiveApp,
                                       keys: dict[str, str | None], tmp_path: Path) -> None:
    command = [
        str(ST), "--config-file", str(CONFIG), "--no-color", "run", str(DOCUMENT),
        "--url", live_app.base_url, "--checks", "all", "--phases", PHASES[caller],
        "--max-examples", EXAMPLES, "--workers", "1", "--output-sanitize", "false",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    key = keys[caller]
    if key is not None:
        command += ["--header", f"Authorization: Bearer {key}"]
    seed = os.environ.get("SPOOL_FUZZ_SEED")
    if seed:
        command += ["--seed", seed]
    # In tmp_path, its cache (.schemathesis/) stays out of the checkout.
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False,
                          cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)})
    print(done.stdout)  # every failure with a curl line to reproduce it (shown on failure)
    summary = done.stdout[done.stdout.rfind(" SUMMARY "):]
    assert done.returncode == 0, (
        f"schemathesis as {caller} found failures (above):\n{summary}\n{done.stderr[-5000:]}")
