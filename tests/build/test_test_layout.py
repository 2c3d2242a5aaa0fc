"""No test module imports another: what tests share lives in ``tests/helpers*.py`` and the
conftest files. Importing a ``test_*`` module runs (and, by name, re-collects) its tests'
fixtures in another module and ties the two together; a helper moved out is found by name.

Every ``tests/**/*.py`` is parsed (``ast``: imports inside functions and ``TYPE_CHECKING``
blocks count too). The checker itself is tested on a source that must be refused."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def _is_test_module(dotted: str) -> bool:
    return dotted.rpartition(".")[2].startswith("test_")


def imports_of_test_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, dotted name) of each import of a ``test_*`` module in ``source``, a module of
    ``package`` (relative imports are resolved against it). Only the tests package counts."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names
                      if alias.name.startswith("tests.") and _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            if base != "tests" and not base.startswith("tests."):
                continue
            if _is_test_module(base):
                found.append((node.lineno, base))
            # ``from tests.api import test_sse`` imports the module by its name
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if _is_test_module(alias.name)]
    return found


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


def test_no_test_module_imports_another() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, name in imports_of_test_modules(path.read_text(), _package_of(path))
    ]
    assert wrong == [], "move what is shared to tests/helpers*.py or a conftest:\n" + "\n".join(
        wrong)


@pytest.mark.parametrize("source", [
    "from tests.api.test_turns import agent",
    "import tests.api.test_turns",
    "from tests.api import conftest, test_sse",
    "from .test_serve import Server",
    "from . import test_serve",
    "def f():\n    from tests.engine.infra.test_embedded import alive\n",
    "if TYPE_CHECKING:\n    from tests.api.test_sse import Live\n",
])
def test_the_checker_refuses_an_import_of_a_test_module(source: str) -> None:
    assert imports_of_test_modules(source, "tests.spool") != []


@pytest.mark.parametrize("source", [
    "from tests.helpers import agent, say",
    "from tests.api.conftest import Api",
    "from tests.api import sse_client",
    "import pytest_asyncio",
    "from hypothesis import strategies as st",
    "from engine.runtime.tools import test_double",  # not a module of the tests
    "from . import helpers",
])
def test_the_checker_allows_helpers_conftest_and_libraries(source: str) -> None:
    assert imports_of_test_modules(source, "tests.spool") == []
