"""The layers import only downward (docs/DESIGN.md, "Layout").

Every module of ``engine``, ``api`` and ``spool`` is parsed (``ast``, so lazy imports inside
functions and ``TYPE_CHECKING`` blocks count too) and each import of a project module is checked
against the order below. Modules of one folder may import each other; two layers of one rank
(``auth`` and ``runtime``) may not. The checker itself is tested on imports that must be refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "api", "spool")

# Rank of each layer: a module may import layers of a lower rank and its own layer only.
RANKS: dict[str, int] = {
    "engine.base": 0,  # settings, errors, events, ids, pages, logging, metrics, prices
    "engine.infra": 1,
    "engine.log": 2,
    "engine.projections": 3,
    "engine.domain": 4,
    "engine.auth": 5,
    "engine.runtime": 5,
    "engine.debug": 6,
    "engine.engine": 7,
    "api": 8,
    "spool.server": 9,
    "spool.cli": 10,
    "spool.sdk": 0,  # the SDK is a client: it imports no server code at all
}
# Libraries a layer must never import (DESIGN: the engine knows nothing of HTTP).
FORBIDDEN_LIBRARIES: dict[str, tuple[str, ...]] = {
    "engine": ("starlette", "uvicorn"),
    "spool.sdk": ("asyncpg", "redis", "starlette", "uvicorn"),
}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to; None outside the project."""
    parts = module.split(".")
    top = parts[0]
    if top == "api":
        return "api"
    if top == "engine":
        if len(parts) == 1:
            return "engine.base"
        if f"engine.{parts[1]}" in RANKS:
            return f"engine.{parts[1]}"
        return "engine.base"
    if top == "spool":
        if len(parts) > 1 and parts[1] in ("server", "cli"):
            return f"spool.{parts[1]}"
        return "spool.sdk"
    return None


def allowed(importer: str, imported: str) -> bool:
    """Whether module ``importer`` may import module ``imported``."""
    source, target = layer_of(importer), layer_of(imported)
    if source is None or target is None or source == target:
        return True
    if source == "spool.sdk":
        return False
    return RANKS[target] < RANKS[source]


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a source file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from engine import store` imports the module engine.store, not engine.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def modules() -> list[tuple[Path, str]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append((path, name))
    return found


def violations(path: Path, module: str) -> list[str]:
    source = layer_of(module)
    assert source is not None
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    bad = []
    for line, name in imports_of(path, module):
        target = _project_module(name)
        if target is not None and not allowed(module, target):
            bad.append(f"{where}:{line}: {source} imports {target}")
        library = name.split(".")[0]
        for layer, libraries in FORBIDDEN_LIBRARIES.items():
            if (source == layer or source.startswith(layer + ".")) and library in libraries:
                bad.append(f"{where}:{line}: {source} imports {library}")
    return list(dict.fromkeys(bad))  # one line per import, however many names it takes


def _project_module(name: str) -> str | None:
    """The project module an imported name lives in (``engine.events.Foo`` -> engine.events)."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    while len(parts) > 1:
        candidate = ROOT.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            break
        parts.pop()
    return ".".join(parts)


def test_every_import_goes_down_a_layer() -> None:
    found = [bad for path, module in modules() for bad in violations(path, module)]
    assert found == []


def test_every_module_is_in_a_layer() -> None:
    engine_folders = {p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").exists()}
    assert {f"engine.{name}" for name in engine_folders} <= set(RANKS)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("engine.log.store", "engine.domain.sessions"),
        ("engine.log.fanout", "engine.projections.runner"),
        ("engine.log.store", "engine.runtime.worker"),
        ("engine.projections.agents", "engine.domain.session_state"),
        ("engine.projections.runner", "engine.runtime.schedule"),
        ("engine.infra.db", "engine.log.store"),
        ("engine.domain.sessions", "engine.debug.state_view"),
        ("engine.auth.access", "engine.runtime.tools"),
        ("engine.runtime.worker", "engine.auth.credentials"),
        ("engine.events", "engine.infra.db"),
        ("engine.engine", "api.app"),
        ("engine.domain.sessions", "api.errors"),
        ("api.routes.sessions", "spool.server.commands"),
        ("spool.client", "engine.events"),
        ("spool", "api.app"),
        ("spool.client", "spool.server.commands"),
    ],
)
def test_a_wrong_way_import_is_refused(importer: str, imported: str) -> None:
    assert not allowed(importer, imported)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("engine.log.store", "engine.infra.db"),
        ("engine.domain.sessions", "engine.log.store"),
        ("engine.domain.sessions", "engine.domain.session_state"),
        ("engine.engine", "engine.debug.rerun"),
        ("api.routes.sessions", "engine.engine"),
        ("spool.server.commands", "api.app"),
        ("spool.cli", "spool.server.commands"),
        ("spool.client", "spool"),
    ],
)
def test_a_downward_import_is_allowed(importer: str, imported: str) -> None:
    assert allowed(importer, imported)


def test_the_checker_finds_a_wrong_way_import_in_source(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from engine.domain import sessions\n    import starlette\n")
    assert violations(module, "engine.log.bad") == [
        "bad.py:2: engine.log imports engine.domain.sessions",
        "bad.py:3: engine.log imports starlette",
    ]
