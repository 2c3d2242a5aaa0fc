"""The wheel carries what the server needs beside its Python modules: schema.sql and every
file of api/static/ (spool.js, /docs and the vendored Swagger UI with its licence)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_static_files_and_the_schema(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", str(ROOT), "-w", str(tmp_path)],
                   check=True, timeout=300, capture_output=True)
    [wheel] = tmp_path.glob("agentspool-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = {path.relative_to(ROOT).as_posix() for path in (ROOT / "api" / "static").rglob("*")
              if path.is_file()}
    assert {"api/static/spool.js", "api/static/swagger-ui/LICENSE"} <= static
    assert static <= names
    assert "engine/schema.sql" in names
