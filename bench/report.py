"""One report: every benchmark scenario, one after another, then one results file and one table.

Runs each script of bench/ as a subprocess (never two at once: they would share the cores),
collects the one JSON line each prints on stdout, and writes

* ``bench/results/<YYYY-MM-DD>-<short commit>.json``: the commit, the date, quick or full, the
  machine, every scenario's JSON (or ``{"failed": ...}`` with the tail of its stderr), and the
  figures: one row per target, from the rules in ``RULES``;
* unless ``--no-docs``: the table in docs/BENCHMARKS.md, between ``<!-- report:start -->`` and
  ``<!-- report:end -->`` (the rest of the file is left as it is).

Each row: the scenario, the figure, the raw limit measured beside it in the same run (and what
it is), their ratio, the target and whether it is met (``yes`` / ``no``; ``-`` when the figure
has no target or was not measured). A target is the issue's, never adjusted to the figure.

``--quick`` gives every script short arguments (1 run, seconds instead of minutes, smaller
loads where a script has such options): the whole report in about 2 minutes on 2 cores, noisy.
A script that fails is recorded as failed; the others still run. Exit 1 if any failed.

    .venv/bin/python bench/report.py [--quick] [--only append,turns] [--no-docs] [--verbose]

Standard library only: the scripts import what they measure, this one only runs them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCS = REPO_ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- report:start -->", "<!-- report:end -->"
TAIL_LINES = 30

Result = dict[str, Any]


# --- the scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """``bench/NAME.py``, with ``args`` always and ``quick`` added under ``--quick``; ``needs``:
    programs it runs that must be on PATH."""

    name: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    timeout: float = 3600.0  # seconds, full run; a tenth (at least 5 min) under --quick

    def argv(self, quick: bool) -> list[str]:
        return [sys.executable, str(BENCH / f"{self.name}.py"), *self.args,
                *(self.quick if quick else ())]


SHORT = ("--seconds", "1", "--warmup", "0.5", "--runs", "1")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("append", quick=SHORT),
    Scenario("http_submit", quick=("--seconds", "2", "--warmup", "1", "--runs", "1",
                                   "--no-references"), needs=("wrk",)),
    # The latency target is set at 10 subscribers and 100 events/s (the script's default load,
    # 1000 x 1000/s, is its stress figure).
    Scenario("sse_latency", args=("--subscribers", "10", "--rate", "100"),
             quick=("--seconds", "2", "--warmup", "0.5", "--drain", "2", "--runs", "1")),
    Scenario("sse_fanout", quick=("--seconds", "2", "--warmup", "0.5", "--runs", "1")),
    Scenario("replay", quick=("--events", "20000", "--runs", "1")),
    Scenario("reconnect_storm", quick=("--clients", "200", "--runs", "1")),
    Scenario("idle_connections", quick=("--connections", "1000", "--runs", "1")),
    Scenario("turns", quick=SHORT),
    Scenario("projections", quick=("--events", "20000", "--runs", "1", "--lag-seconds", "3",
                                   "--lag-warmup", "1")),
)
NAMES = tuple(s.name for s in SCENARIOS)


# --- the rules: one row per target ---------------------------------------------------------------


class NotMeasured(Exception):
    """The script's JSON has no such figure (an option turned it off, or it cannot measure it)."""


@dataclass(frozen=True, slots=True)
class Target:
    """``on`` (``"ratio"`` or ``"figure"``) ``op`` ``bound``, e.g. ratio >= 0.5."""

    on: str
    op: str
    bound: float
    unit: str = ""

    def met(self, figure: float, ratio: float | None) -> bool:
        value = ratio if self.on == "ratio" else figure
        if value is None:
            raise NotMeasured("no ratio")
        return {">=": value >= self.bound, "<=": value <= self.bound, "<": value < self.bound,
                "==": value == self.bound}[self.op]

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{'ratio ' if self.on == 'ratio' else ''}{self.op} {self.bound:,g}{unit}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: ``figure(result)`` in ``unit`` (printed with ``fmt``) named ``what`` (formatted
    with the result's keys), beside ``raw(result)``, the raw limit ``raw_what``; ``target`` when
    it has one, checked only when ``applies(result)``."""

    scenario: str
    what: str
    unit: str
    figure: Callable[[Result], float]
    raw_what: str = ""
    raw: Callable[[Result], float] | None = None
    target: Target | None = None
    fmt: str = ",.0f"
    applies: Callable[[Result], bool] = field(default=lambda result: True)


def _cores(figures: Result, keys: Sequence[str]) -> float:
    values = [figures.get(key) for key in keys]
    if any(value is None for value in values):
        absent = [key for key, value in zip(keys, values, strict=True) if value is None]
        raise NotMeasured(f"no {', '.join(absent)}")
    return float(sum(values))  # type: ignore[arg-type]


# Every process a turn costs CPU in: the server, extra worker processes, Postgres, Valkey.
SERVICE_CORES = ("server_cores", "worker_procs_cores", "postgres_cores", "valkey_cores")


def cpu_ms_per_event(result: Result, kind: str, sessions: str = "100") -> float:
    """CPU ms per event of ``kind`` ("turns" or "append") at ``sessions``, over SERVICE_CORES."""
    if not result.get("services_cpu_measured"):
        raise NotMeasured("Postgres/Valkey CPU not measured (external services)")
    figures = result[kind][sessions]
    per_op = result["events_per_turn"] if kind == "turns" else 1
    return 1000.0 * _cores(figures, SERVICE_CORES) / (figures["rate"] * per_op)


def slowest_rebuild(result: Result) -> tuple[str, float]:
    name = min(result["rebuild_eps"], key=result["rebuild_eps"].get)
    return name, float(result["rebuild_eps"][name])


def worst_lag_p99(result: Result) -> float:
    if "lag" not in result:
        raise NotMeasured("lag phase skipped")
    return max(v["p99"] for v in result["lag"]["ms"].values())


RULES: tuple[Rule, ...] = (
    Rule("append", "engine, 256 single-event appenders", "ev/s",
         lambda r: r["engine_eps"]["256"],
         "raw batch insert, {raw_connections} connections x {raw_batch_size} rows/txn",
         lambda r: r["raw_batch_256_eps"], Target("ratio", ">=", 0.5)),
    Rule("append", "engine, 256 single-event appenders", "ev/s",
         lambda r: r["engine_eps"]["256"],
         "eventsourcing library, 256 threads (peer, not a raw limit)",
         lambda r: r["eventsourcing_eps"]["256"], Target("ratio", ">=", 5)),
    Rule("http_submit", "POST messages, {connections} connections", "req/s",
         lambda r: r["medians"]["engine"]["rate"],
         "bare Starlette + asyncpg, group commit", lambda r: r["medians"]["bare"]["rate"],
         Target("ratio", ">=", 0.5)),
    Rule("http_submit", "POST messages p99, {connections} connections", "ms",
         lambda r: r["medians"]["engine"]["p99_us"] / 1000,
         "bare Starlette + asyncpg, group commit", lambda r: r["medians"]["bare"]["p99_us"] / 1000,
         Target("figure", "<=", 50, "ms"), fmt=".1f"),
    Rule("turns", "CPU per event, 100 sessions (server + workers + Postgres + Valkey)", "ms",
         lambda r: cpu_ms_per_event(r, "turns"),
         "the same, plain appends at 100 sessions", lambda r: cpu_ms_per_event(r, "append"),
         Target("figure", "<=", 0.25, "ms"), fmt=".3f"),
    Rule("turns", "turns/s, 100 sessions", "turns/s", lambda r: r["turns"]["100"]["rate"],
         "turns/s at 10 sessions (same run)", lambda r: r["turns"]["10"]["rate"],
         Target("ratio", ">=", 1), fmt=",.1f"),
    Rule("sse_fanout", "delivered, {subscribers} subscribers", "ev/s",
         lambda r: r["engine"]["delivered_eps"],
         "bare ASGI SSE server", lambda r: r["bare"]["delivered_eps"],
         Target("ratio", ">=", 0.7)),
    Rule("replay", "SSE replay of {events:,} events from cursor 0", "ev/s",
         lambda r: r["sse_eps"],
         "raw asyncpg page reads (1000/page)", lambda r: r["raw_pg_pages_eps"],
         Target("ratio", ">=", 0.5)),
    Rule("replay", "SSE replay of {events:,} events from cursor 0", "ev/s",
         lambda r: r["sse_eps"],
         "bare ASGI SSE, pre-encoded frames", lambda r: r["bare_asgi_sse_eps"],
         Target("figure", ">=", 100_000, "ev/s")),
    Rule("sse_latency", "append->SSE p50, {subscribers} subs at {rate_eps:g} ev/s", "ms",
         lambda r: r["engine"]["p50_ms"], "bare ASGI SSE server", lambda r: r["bare"]["p50_ms"],
         Target("figure", "<", 2, "ms"), fmt=".2f",
         applies=lambda r: r["subscribers"] == 10 and r["rate_eps"] == 100),
    Rule("sse_latency", "append->SSE p99, {subscribers} subs at {rate_eps:g} ev/s", "ms",
         lambda r: r["engine"]["p99_ms"], "bare ASGI SSE server", lambda r: r["bare"]["p99_ms"],
         Target("figure", "<", 10, "ms"), fmt=".2f",
         applies=lambda r: r["subscribers"] == 10 and r["rate_eps"] == 100),
    Rule("reconnect_storm", "{clients:,} clients drop and resume: all live", "s",
         lambda r: r["all_live_s"], "the same clients connecting the first time",
         lambda r: r["first_connect_all_live_s"], fmt=".2f"),
    Rule("reconnect_storm", "missed + duplicated events, {clients:,} clients", "events",
         lambda r: r["missed_events"] + r["duplicate_events"],
         target=Target("figure", "==", 0)),
    Rule("idle_connections", "memory per idle SSE connection, {connections:,} connections", "KiB",
         lambda r: r["spool_kib_per_connection"],
         "bare ASGI SSE server", lambda r: r["bare_asgi_sse_kib_per_connection"], fmt=".1f"),
    Rule("projections", "slowest view rebuild ({slowest}), {events:,} events", "ev/s",
         lambda r: slowest_rebuild(r)[1],
         "raw asyncpg page reads of the log", lambda r: r["raw_read_pages_eps"],
         Target("figure", ">=", 50_000, "ev/s")),
    Rule("projections", "projection lag p99 (worst view) at {lag[target_eps]:g} ev/s", "ms",
         worst_lag_p99, fmt=".1f"),
)


class _Unknown:
    """What a label shows for a key the result lacks (a failed or shortened run)."""

    def __getitem__(self, key: object) -> _Unknown:
        return self

    def __format__(self, spec: str) -> str:
        return "?"


class _Keys(dict[str, Any]):
    def __missing__(self, key: str) -> _Unknown:
        return _Unknown()


def _label(template: str, result: Result) -> str:
    keys = _Keys(result)
    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
        keys["slowest"] = slowest_rebuild(result)[0]
    try:
        return template.format_map(keys)
    except (KeyError, IndexError, ValueError, TypeError):
        return template


def _number(value: float, fmt: str, unit: str) -> str:
    return f"{value:{fmt}} {unit}".strip()


def figure_row(rule: Rule, result: Result) -> dict[str, Any]:
    """The row ``rule`` makes of a scenario's ``result`` (the script's JSON or ``{"failed"}``)."""
    row: dict[str, Any] = {"scenario": rule.scenario, "what": _label(rule.what, result),
                           "figure": "", "value": None, "raw": "-", "raw_value": None,
                           "ratio": None, "target": str(rule.target) if rule.target else "-",
                           "met": "-"}
    if "failed" in result:
        row.update(figure="failed", met="no" if rule.target else "-")
        return row
    try:
        value = float(rule.figure(result))
    except (NotMeasured, KeyError, TypeError, ZeroDivisionError) as missing:
        row["figure"] = f"not measured ({_why(missing)})"
        return row
    row.update(value=round(value, 4), figure=_number(value, rule.fmt, rule.unit))
    if rule.raw is not None:
        try:
            raw = float(rule.raw(result))
        except (NotMeasured, KeyError, TypeError, ZeroDivisionError) as missing:
            row["raw"] = f"{_label(rule.raw_what, result)}: not measured ({_why(missing)})"
        else:
            row.update(raw_value=round(raw, 4),
                       raw=f"{_number(raw, rule.fmt, rule.unit)} ({_label(rule.raw_what, result)})")
            if raw:
                row["ratio"] = round(value / raw, 3)
    if rule.target is not None:
        if not rule.applies(result):
            row["target"] += " (not at this load)"
        else:
            try:
                row["met"] = "yes" if rule.target.met(value, row["ratio"]) else "no"
            except NotMeasured:
                row["met"] = "-"
    return row


def _why(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} in its JSON"
    return str(error) or type(error).__name__


def figure_rows(scenarios: dict[str, Result]) -> list[dict[str, Any]]:
    """Every rule's row, for the scenarios that were run, in RULES order."""
    return [figure_row(rule, scenarios[rule.scenario]) for rule in RULES
            if rule.scenario in scenarios]


# --- the machine ---------------------------------------------------------------------------------


def machine(scenarios: dict[str, Result]) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    postgres = next((r["postgres"]["server_version"] for r in scenarios.values()
                     if isinstance(r.get("postgres"), dict)
                     and "server_version" in r["postgres"]), None)
    return {"cpu": cpu, "nproc": os.cpu_count(), "memory_gib": memory_gib,
            "kernel": platform.release(), "python": platform.python_version(),
            "postgres": postgres}


def machine_line(facts: dict[str, Any]) -> str:
    parts = [facts["cpu"], f"{facts['nproc']} CPUs"]
    if facts.get("memory_gib") is not None:
        parts.append(f"{facts['memory_gib']:g} GiB")
    parts += [f"Linux {facts['kernel']}", f"Python {facts['python']}"]
    if facts.get("postgres"):
        parts.append(f"PostgreSQL {facts['postgres']}")
    return ", ".join(parts)


# --- running the scripts -------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_output(stdout: str) -> Result | None:
    """The script's result: the last stdout line that starts with ``{`` and parses."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                found = json.loads(line)
                if isinstance(found, dict):
                    return found
    return None


def run_scenario(scenario: Scenario, quick: bool, verbose: bool) -> Result:
    """Run one script; its JSON, or ``{"failed": why, "stderr_tail": [...]}``."""
    missing = [program for program in scenario.needs if shutil.which(program) is None]
    if missing:
        return {"failed": f"needs {', '.join(missing)} on PATH (Debian: apt-get install -y "
                          f"{' '.join(missing)}; `make bench` installs it when it can)"}
    argv = scenario.argv(quick)
    timeout = max(300.0, scenario.timeout / 10) if quick else scenario.timeout
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    # A session of its own: on a timeout the script and what it started (servers, embedded
    # Postgres) are stopped together.
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    stderr, stdout = proc.stderr, proc.stdout

    def read_stderr() -> None:
        for line in stderr:
            tail.append(line.rstrip("\n"))
            if verbose:
                log(f"    {line.rstrip()}")

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    out: list[str] = []
    out_reader = threading.Thread(target=lambda: out.append(stdout.read()), daemon=True)
    out_reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        code = None
    out_reader.join(timeout=30)
    reader.join(timeout=30)
    if code is None:
        return {"failed": f"timed out after {timeout:.0f} s", "stderr_tail": list(tail)}
    if code != 0:
        return {"failed": f"exit status {code}", "stderr_tail": list(tail)}
    result = parse_output("".join(out))
    if result is None:
        return {"failed": "no JSON line on stdout", "stderr_tail": list(tail)}
    return result


def _stop_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_all(chosen: Sequence[Scenario], quick: bool, verbose: bool) -> dict[str, Result]:
    scenarios: dict[str, Result] = {}
    started = time.monotonic()
    for index, scenario in enumerate(chosen, 1):
        shown = [str(Path(a).relative_to(REPO_ROOT)) if a.startswith("/") else a
                 for a in scenario.argv(quick)[1:]]
        log(f"[{index}/{len(chosen)}] {scenario.name}: python {' '.join(shown)}")
        began = time.monotonic()
        result = run_scenario(scenario, quick, verbose)
        scenarios[scenario.name] = result
        status = f"FAILED ({result['failed']})" if "failed" in result else "done"
        log(f"[{index}/{len(chosen)}] {scenario.name} {status} in "
            f"{time.monotonic() - began:.0f} s (elapsed {time.monotonic() - started:.0f} s)")
        if "failed" in result:
            for line in result.get("stderr_tail", [])[-10:]:
                log(f"    {line}")
    return scenarios


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# --- the results file and the docs ---------------------------------------------------------------


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| scenario | figure | raw limit | ratio | target | met |",
             "| --- | --- | --- | ---: | --- | --- |"]
    for row in rows:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(f"| {cell(row['scenario'])} | {cell(row['what'])}: {cell(row['figure'])} | "
                     f"{cell(row['raw'])} | {ratio} | {cell(row['target'])} | {row['met']} |")
    return "\n".join(lines)


def docs_section(report: Result, results_path: str) -> str:
    failed = [name for name, result in report["scenarios"].items() if "failed" in result]
    lines = [
        "## Latest report",
        "",
        f"`{report['command']}` on {report['date']}, commit {report['commit']}"
        f"{' (uncommitted changes)' if report.get('dirty') else ''}, "
        f"{'quick run (1 run each, short windows: noisy)' if report['quick'] else 'full run'}; "
        f"all figures in `{results_path}`.",
        "",
        f"Machine: {machine_line(report['machine'])}.",
        "",
        markdown_table(report["figures"]),
    ]
    if failed:
        lines += ["", "Failed: " + "; ".join(
            f"{name} ({report['scenarios'][name]['failed']})" for name in failed) + "."]
    return "\n".join(lines)


def rewrite_section(text: str, section: str) -> str:
    """``text`` with what lies between the report markers replaced by ``section``; without the
    markers, the section (with them) goes before the first ``## `` heading (after the intro)."""
    block = f"{START}\n{section}\n{END}"
    start, end = text.find(START), text.find(END)
    if start != -1 and end > start:
        return text[:start] + block + text[end + len(END):]
    if start != -1 or end != -1:
        raise ValueError(f"{DOCS.name}: only one of {START} / {END}")
    heading = text.find("\n## ")
    if heading == -1:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:heading + 1] + block + "\n\n" + text[heading + 1:]


def build_report(scenarios: dict[str, Result], *, quick: bool, command: str, commit: str,
                 dirty: bool, date: str, seconds: float) -> Result:
    return {"commit": commit, "dirty": dirty, "date": date, "quick": quick, "command": command,
            "seconds": round(seconds, 1), "machine": machine(scenarios),
            "scenarios": scenarios, "figures": figure_rows(scenarios)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="short runs of everything (about 2 minutes; noisy figures)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated scenarios to run (of {','.join(NAMES)})")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not rewrite the table in docs/BENCHMARKS.md")
    parser.add_argument("--verbose", action="store_true", help="echo the scripts' stderr")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in NAMES]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    command = " ".join(["python bench/report.py", *(sys.argv[1:] if argv is None else argv)])
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    now = datetime.now(UTC)
    started = time.monotonic()
    scenarios = run_all(chosen, args.quick, args.verbose)
    report = build_report(scenarios, quick=args.quick, command=command, commit=commit,
                          dirty=dirty, date=now.strftime("%Y-%m-%d"),
                          seconds=time.monotonic() - started)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{report['date']}-{commit}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    relative = str(path.relative_to(REPO_ROOT))
    log(f"\nwrote {relative} ({report['seconds']:.0f} s)")
    if not args.no_docs:
        DOCS.write_text(rewrite_section(DOCS.read_text(), docs_section(report, relative)))
        log(f"rewrote the report section of {DOCS.relative_to(REPO_ROOT)}")
    log("")
    log(markdown_table(report["figures"]))
    return 1 if any("failed" in result for result in scenarios.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
