"""spool/_models.py and spool/_sync/ are what scripts/generate_sdk.py makes of
docs/openapi.json and spool/_async/ (so neither can drift), and answers decode into the models
leniently where the API may grow and strictly where it cannot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import spool
from spool._decode import decode

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_sdk", ROOT / "scripts" /
                                                  "generate_sdk.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_sdk", module)
    spec.loader.exec_module(module)
    return module


def test_the_generated_modules_are_current() -> None:
    stale = [str(path.relative_to(ROOT)) for path, text in generator().outputs().items()
             if not path.exists() or path.read_text() != text]
    assert stale == [], f"run python scripts/generate_sdk.py: {stale} are stale"


def test_the_sync_copy_is_the_async_source_without_async() -> None:
    unasync = generator().unasync
    source = ("async def f(self) -> AsyncIterator[Event]:\n"
              "    async with AsyncClient() as c:\n"
              "        await c.aclose()\n"
              "        async for x in AsyncPager(): yield await anext(x)\n")
    assert unasync(source) == ("def f(self) -> Iterator[Event]:\n"
                               "    with Client() as c:\n"
                               "        c.close()\n"
                               "        for x in Pager(): yield next(x)\n")
    # A line continued under its bracket moves left with it; a hanging indent stays.
    aligned = ("    async def f(self, a: int,\n                b: int) -> None:\n"
               "        await g(\n            3)\n")
    assert unasync(aligned) == ("    def f(self, a: int,\n          b: int) -> None:\n"
                                "        g(\n            3)\n")


def test_an_unknown_field_or_enum_value_decodes_a_missing_one_does_not() -> None:
    tenant = decode(spool.Tenant, {"id": "ten_1", "name": "a", "status": "frozen",
                                   "created_at": "t", "updated_at": "t", "new_field": 1})
    assert (tenant.status, tenant.position) == ("frozen", None)
    with pytest.raises(spool.ProtocolError, match="Tenant"):
        decode(spool.Tenant, {"id": "ten_1"})
    with pytest.raises(spool.ProtocolError, match="name: expected str"):
        decode(spool.Tenant, {"id": "ten_1", "name": 3, "status": "active",
                              "created_at": "t", "updated_at": "t"})


def test_models_nest_and_are_frozen() -> None:
    page = decode(spool.TenantPage, {"data": [{"id": "ten_1", "name": "a", "status": "active",
                                               "created_at": "t", "updated_at": "t"}],
                                     "has_more": False, "next_cursor": None})
    assert isinstance(page.data[0], spool.Tenant)
    with pytest.raises(AttributeError):
        page.has_more = True  # type: ignore[misc]
