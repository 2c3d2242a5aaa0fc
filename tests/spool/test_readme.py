"""README.md's Python client examples run as written against the live server (its address and
admin token put in), and the first one's turns end at their ``session_done``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import LiveApp
from tests.conftest import ADMIN_TOKEN

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Python client\n"):text.index("## Development\n")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_python_client_examples_run(live_app: LiveApp,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    blocks = examples()
    assert len(blocks) == 2
    namespace: dict[str, Any] = {"__name__": "readme"}
    for block in blocks:
        code = block.replace("dev-admin-token-change-me", ADMIN_TOKEN).replace(
            "http://127.0.0.1:8700", live_app.base_url)
        if "async with client.sessions.stream" in code:  # it follows for ever: stop at once
            code = code.replace("print(event.seq, event.type, event.data)", "break")
        exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    ends = [line for line in printed if re.match(r"\d+ session_done\b", line)]
    assert len(ends) == 2  # the turn each example follows
