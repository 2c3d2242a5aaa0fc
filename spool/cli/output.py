"""How the client commands print: data on stdout, everything else on stderr.

``--json`` (``-o json``): one JSON document per command (a list is an array), or JSON Lines for
what streams (``send --follow``, ``tail``, ``export``). Otherwise, on a terminal: rich tables
and colours; not on a terminal (a pipe, a file): no colour and no escape at all, tables as
tab-separated lines under an upper-case header (as kubectl), records as ``key:<TAB>value`` lines
(as gh). rich decides what a terminal is, so ``NO_COLOR`` and ``FORCE_COLOR`` work as usual.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

# The colour of a status wherever one is shown (a column named "status" or a record's status).
STATUS_STYLES = {
    "active": "green", "idle": "green", "completed": "green", "approved": "green",
    "done": "green", "ok": "green", "running": "yellow", "busy": "yellow",
    "pending": "yellow", "requires_action": "yellow", "in_progress": "yellow",
    "queued": "yellow", "review": "cyan", "inbox": "blue", "suspended": "red",
    "failed": "red", "denied": "red", "blocked": "red", "budget_exceeded": "red",
    "offline": "dim", "archived": "dim", "revoked": "dim", "cancelled": "dim",
}


def plain(value: Any) -> Any:
    """``value`` as JSON-able builtins: the SDK's answers are dataclasses (an event's ``data``
    a dict), the rest is JSON already."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A field named as a Python keyword has a trailing "_" (``from_``); JSON has the wire name.
        return {f.name.removesuffix("_"): plain(getattr(value, f.name))
                for f in dataclasses.fields(value)}
    return str(value)


def attr(value: Any, name: str) -> Any:
    """A field of an SDK answer, whether it came as an object or a dict."""
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def dig(record: Mapping[str, Any], path: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; None where a step is missing."""
    value: Any = record
    for step in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def usd(value: Any) -> str:
    return f"${value:.6f}" if isinstance(value, int | float) else ""


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    path: str
    format: Callable[[Any], str] | None = None


# Columns of prose, folded on a narrow terminal; every other one (ids, times) stays whole.
WRAPPED = frozenset({"title", "description", "body", "input", "content", "name", "reason"})


def columns(*specs: str | tuple[str, str] | Column) -> tuple[Column, ...]:
    """Columns from paths (header: the path's last step, upper-cased), (header, path) pairs or
    ``Column`` for a formatted one."""
    made = []
    for spec in specs:
        if isinstance(spec, Column):
            made.append(spec)
        elif isinstance(spec, tuple):
            made.append(Column(spec[0], spec[1]))
        else:
            made.append(Column(spec.rsplit(".", 1)[-1].upper(), spec))
    return tuple(made)


def cell(value: Any) -> str:
    """One value as text: nothing for None, JSON for what is not a scalar."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Output:
    """The one place a client command writes to."""

    def __init__(self, fmt: str = "table", *, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.json = fmt == "json"
        self.ids = fmt == "id"  # only what names each thing shown: for $(...) in scripts
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self.console = Console(file=self._stdout, highlight=False, soft_wrap=True)
        self.errors = Console(file=self._stderr, highlight=False, soft_wrap=True)

    @property
    def rich(self) -> bool:
        """Whether stdout is a terminal (tables and colours) rather than a pipe or a file."""
        return self.console.is_terminal

    # --- data ------------------------------------------------------------------------------

    def document(self, value: Any) -> None:
        """One JSON document (``--json``)."""
        self._stdout.write(json.dumps(plain(value), indent=2, ensure_ascii=False) + "\n")

    def json_line(self, value: Any) -> None:
        """One line of JSON Lines, flushed: what streams is read as it comes."""
        self._stdout.write(json.dumps(plain(value), separators=(",", ":"),
                                      ensure_ascii=False) + "\n")
        self._stdout.flush()

    def table(self, rows: Iterable[Any], cols: Sequence[Column]) -> None:
        records = [plain(row) for row in rows]
        if self.json:
            self.document(records)
        elif self.ids:
            for record in records:
                self._stdout.write(cell(dig(record, cols[0].path)) + "\n")
        elif self.rich:
            self._rich_table(records, cols)
        else:
            self._plain_table(records, cols)

    def record(self, value: Any, fields: Sequence[str] | None = None) -> None:
        """One object: every field (or ``fields``), a line each."""
        data = plain(value)
        if self.json:
            self.document(data)
            return
        if not isinstance(data, Mapping):
            self.line(cell(data))
            return
        if self.ids:
            self.line(cell(data.get("id", next(iter(data.values()), None))))
            return
        # ``position`` is the SDK's note of where a write landed: None on a read.
        keys = [k for k in (fields or list(data))
                if k in data and not (k == "position" and data[k] is None)]
        if self.rich:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            for key in keys:
                grid.add_row(key, self._styled(key, data[key]))
            self.console.print(grid)
        else:
            for key in keys:
                self._stdout.write(f"{key}:\t{cell(data[key])}\n")

    def done(self, message: str, value: Any) -> None:
        """What an action did: ``value`` (the resource it changed) with ``--json``, otherwise
        one line saying so."""
        if self.json:
            self.document(value)
        elif self.ids and isinstance(plain(value), Mapping):
            self.record(value)
        else:
            self.line(message, style="green")

    def line(self, text: str, style: str | None = None) -> None:
        if self.rich:
            self.console.print(Text(text, style=style or ""))
        else:
            self._stdout.write(text + "\n")

    def styled(self, text: Text) -> None:
        """A line made with its colours: the colours on a terminal, the words elsewhere."""
        if self.rich:
            self.console.print(text)
        else:
            self._stdout.write(text.plain + "\n")
            self._stdout.flush()

    def text(self, text: str) -> None:
        """Text as it streams in: no newline added, flushed."""
        self._stdout.write(text)
        self._stdout.flush()

    # --- stderr ----------------------------------------------------------------------------

    def note(self, text: str, style: str = "dim") -> None:
        """A remark for the person watching (progress, what to do next): stderr."""
        if self.errors.is_terminal:
            self.errors.print(Text(text, style=style))
        else:
            self._stderr.write(text + "\n")
        self._stderr.flush()

    def error(self, text: str) -> None:
        if self.errors.is_terminal:
            self.errors.print(Text("error: ", style="bold red") + Text(text))
        else:
            self._stderr.write(f"error: {text}\n")
        self._stderr.flush()

    # --- the two table shapes --------------------------------------------------------------

    def _rich_table(self, records: list[Any], cols: Sequence[Column]) -> None:
        # No rules, as kubectl: the columns get the width.
        table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
        for col in cols:
            wraps = col.path.rsplit(".", 1)[-1] in WRAPPED
            table.add_column(col.header, overflow="fold", no_wrap=not wraps,
                             min_width=12 if wraps else None)
        for record in records:
            table.add_row(*(self._styled(col.path, dig(record, col.path), col.format)
                            for col in cols))
        self.console.print(table)
        if not records:
            self.note("(none)")

    def _plain_table(self, records: list[Any], cols: Sequence[Column]) -> None:
        self._stdout.write("\t".join(col.header for col in cols) + "\n")
        for record in records:
            values = (_formatted(dig(record, col.path), col.format) for col in cols)
            self._stdout.write("\t".join(v.replace("\t", " ").replace("\n", " ")
                                         for v in values) + "\n")

    @staticmethod
    def _styled(path: str, value: Any, fmt: Callable[[Any], str] | None = None) -> Text:
        if value is None:
            return Text("-", style="dim")
        text = _formatted(value, fmt)
        if path.endswith("_at") and len(text) > 19 and text[10] == "T":
            text = text[:19].replace("T", " ")  # to the second, on a terminal (UTC)
        style = STATUS_STYLES.get(text, "") if path.rsplit(".", 1)[-1] == "status" else ""
        return Text(text, style=style)


def _formatted(value: Any, fmt: Callable[[Any], str] | None) -> str:
    return fmt(value) if fmt is not None and value is not None else cell(value)
