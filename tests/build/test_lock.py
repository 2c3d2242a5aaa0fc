"""Installs are locked: requirements/*.lock pin every dependency pyproject.toml names (runtime in
run.lock, runtime + test + bench in dev.lock) to one exact version inside its range, each with
hashes, and the Makefile installs the project from them with --require-hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^ \\;]+)")


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of each requirement in a lock file."""
    found: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match[1])
            found[name] = (match[3], 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = found[name]
            found[name] = (version, hashes + 1)
    return found


def wanted(*extras: str) -> list[Requirement]:
    lines = list(PROJECT["dependencies"])
    for extra in extras:
        lines += PROJECT["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize(("lock", "extras"), [("run.lock", ()), ("dev.lock", ("test", "bench"))])
def test_every_dependency_is_pinned_in_its_range_with_hashes(
        lock: str, extras: tuple[str, ...]) -> None:
    locked = pins(lock)
    assert locked and all(hashes > 0 for _, hashes in locked.values()), "a pin without hashes"
    for requirement in wanted(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in requirements/{lock}: run make lock"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement.name}=={version} in {lock} is outside {requirement.specifier}")


def test_the_wheel_keeps_ranges_and_the_makefile_installs_the_locks() -> None:
    assert not [line for line in PROJECT["dependencies"] if "==" in line]
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements/run.lock" in makefile
    assert "--require-hashes --no-deps -r requirements/dev.lock" in makefile
    assert re.search(r"^lock:", makefile, re.M)
