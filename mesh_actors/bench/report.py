"""Results out: one JSON line per scenario on stdout (and in a file), ratios, human tables on stderr.

Every record gets ``baseline_ratio``: its server CPU per op (echo) or per delivery (fan-out) divided
by the ``websockets`` baseline server's at the same load, measured in the same run (the baselines
run first). It is None when no baseline ran. ``baseline_rate_ratio`` is the same for ops/s or
deliveries/s, and a Ray record also gets ``inline_ratio`` (CPU per unit against inline). CPU per
unit is the figure to compare: on a shared machine throughput moves with the neighbours.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from .treecpu import ROLES

REFERENCE_TARGET = "baseline-websockets"
"""The target ``baseline_ratio`` divides by: the bare library the gateway is built on."""


def percentile_us(sorted_ns: Sequence[int], pct: float) -> float:
    """Nearest-rank percentile of already sorted nanosecond values, in microseconds (0 for none)."""
    if not sorted_ns:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_ns)))
    return round(sorted_ns[rank - 1] / 1000, 1)


def unit(result: dict[str, Any]) -> str:
    """What one count of the scenario is: ``op`` (an echo round trip) or ``delivery``."""
    return "op" if result["scenario"] == "echo" else "delivery"


def cpu_per_unit(result: dict[str, Any]) -> float | None:
    """Server CPU µs per op or delivery."""
    return result.get(f"server_cpu_us_per_{unit(result)}")


def rate(result: dict[str, Any]) -> float:
    """Ops/s or deliveries/s."""
    return float(result["ops_per_s"] if result["scenario"] == "echo" else result["deliveries_per_s"])


def mode_label(result: dict[str, Any]) -> str:
    """Fan-out mode as shown: ``flat`` (``flat x4`` with 4 publishes in flight) or ``rate 50``."""
    if result["mode"] == "rate":
        return f"rate {result['rate_target']:g}"
    return "flat" if result["inflight"] == 1 else f"flat x{result['inflight']}"


def load_key(result: dict[str, Any]) -> tuple[Any, ...]:
    """What must match for two records to be compared (everything but the target)."""
    if result["scenario"] == "echo":
        return ("echo", result["client"], result["clients"])
    return ("fanout", result["client"], result["subscribers"], mode_label(result))


def failed(result: dict[str, Any]) -> bool:
    """True if the run lost, garbled or reordered anything, a client failed, or nothing was counted."""
    if result["scenario"] == "echo":
        return bool(result["lost"] or result["wrong"] or result["errors"] or not result["ops"])
    return bool(
        result["lost"]
        or result["disorder"]
        or result["garbled"]
        or result["publish_errors"]
        or result["errors"]
        or not result["deliveries"]
    )


def _ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 2) if value and reference else None


class Reporter:
    """Collects the records of one run, adds the ratios, and writes each out as soon as it is known."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.results: list[dict[str, Any]] = []
        self._stdout = stdout
        self._stderr = stderr
        self._files: list[IO[str]] = []
        self._references: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        """target -> load key -> record, for the ratio targets (the baseline and inline)."""
        self.machine: dict[str, Any] = {}
        """Facts about the machine added to every record (e.g. ``python_loop_ns``)."""

    def also_write_to(self, file: IO[str]) -> None:
        """Copy every JSON line into ``file`` too (the ``--out`` results file)."""
        self._files.append(file)

    def progress(self, message: str) -> None:
        """A progress line on stderr (stdout carries only the JSON lines)."""
        print(message, file=self._stderr or sys.stderr, flush=True)

    def result(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add the ratios to ``record``, print its JSON line, keep it; returns it."""
        record.update(self.machine)
        key = load_key(record)
        reference = self._references.get(REFERENCE_TARGET, {}).get(key)
        if record["target"] == REFERENCE_TARGET:
            reference = record
        reference_cpu = cpu_per_unit(reference) if reference else None
        record["baseline_ratio"] = _ratio(cpu_per_unit(record), reference_cpu)
        record["baseline_rate_ratio"] = _ratio(rate(record), rate(reference) if reference else None)
        inline = self._references.get("mesh-inline", {}).get(key)
        if record["target"] == "mesh-ray":
            record["inline_ratio"] = _ratio(cpu_per_unit(record), cpu_per_unit(inline) if inline else None)
        if record["target"] in (REFERENCE_TARGET, "mesh-inline"):
            self._references.setdefault(record["target"], {})[key] = record
        line = json.dumps(record)
        for stream in [self._stdout or sys.stdout, *self._files]:
            print(line, file=stream, flush=True)
        self.results.append(record)
        if failed(record):
            self.progress(f"[{record['target']}] {key} FAILED: {failure_summary(record)}")
        if record["generator_saturated"]:
            self.progress(
                f"[{record['target']}] {key}: the generator used {record['generator_cpu_pct']}% of its core; "
                "this rate is the generator's limit: compare server CPU per unit"
            )
        return record


def failure_summary(result: dict[str, Any]) -> str:
    """The counts that make a record failed, in one line."""
    keys = ("lost", "wrong", "disorder", "garbled", "publish_errors")
    counts = ", ".join(f"{k}={result[k]}" for k in keys if result.get(k))
    return "; ".join(filter(None, [counts, *result["errors"][:3]])) or "nothing counted"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _notes(result: dict[str, Any]) -> str:
    limit: str = result["limit"]
    return limit + (f", FAILED {failure_summary(result)}" if failed(result) else "")


Row = dict[str, Any]
Column = tuple[str, int, Callable[[Row], str]]
"""(title, width, cell text); a negative width aligns left."""


def format_table(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    """A fixed-width text table: a header, a rule, one line per row."""

    def line(cells: Sequence[str]) -> str:
        widths = (width for _, width, _ in columns)
        return " ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for w, c in zip(widths, cells, strict=True))

    header = line([title for title, _, _ in columns])
    return "\n".join([header, "-" * len(header), *(line([cell(r) for _, _, cell in columns]) for r in rows)])


def _field(key: str, digits: int = 1, scale: float = 1.0) -> Callable[[Row], str]:
    """Cell text of ``row[key] / scale`` with ``digits`` decimals (``-`` when missing)."""
    return lambda r: _num(None if r.get(key) is None else r[key] / scale, digits)


_TARGET: Column = ("target", -20, lambda r: r["target"])
_SUBSCRIBERS: Column = ("S", 5, lambda r: str(r["subscribers"]))
_MODE: Column = ("mode", -9, mode_label)
_TAIL: list[Column] = [
    ("srv%", 5, _field("server_cpu_pct", 0)),
    ("gen%", 5, _field("generator_cpu_pct", 0)),
    ("oth%", 5, _field("other_cpu_pct", 0)),
]

ECHO_COLUMNS: list[Column] = [
    _TARGET,
    ("C", 4, lambda r: str(r["clients"])),
    ("ops/s", 8, _field("ops_per_s", 0)),
    ("p50 us", 7, _field("p50_us", 0)),
    ("p99 us", 7, _field("p99_us", 0)),
    ("srv us/op", 9, _field("server_cpu_us_per_op")),
    ("(sys)", 6, _field("server_sys_us_per_op")),
    ("x base", 6, _field("baseline_ratio", 2)),
    ("rate x", 6, _field("baseline_rate_ratio", 2)),
    *_TAIL,
    ("gen us/op", 9, _field("generator_cpu_us_per_op")),
    ("lost", 5, lambda r: str(r["lost"])),
    (" limit", -6, _notes),
]
"""Echo: ``x base`` is server CPU per op (``rate x``: ops/s) relative to the baseline."""

FANOUT_COLUMNS: list[Column] = [
    _TARGET,
    _SUBSCRIBERS,
    _MODE,
    ("pub/s", 7, _field("published_per_s", 0)),
    ("deliv/s", 9, _field("deliveries_per_s", 0)),
    ("p50 ms", 7, _field("p50_us", 2, 1000)),
    ("p99 ms", 7, _field("p99_us", 2, 1000)),
    ("srv us/d", 8, _field("server_cpu_us_per_delivery")),
    ("(sys)", 6, _field("server_sys_us_per_delivery")),
    ("x base", 6, _field("baseline_ratio", 2)),
    ("x inl", 5, _field("inline_ratio", 2)),
    ("net us/d", 8, _field("server_net_cpu_us_per_delivery")),
    ("idle%", 5, _field("idle_cpu_pct")),
    *_TAIL,
    ("gen us/d", 8, _field("generator_cpu_us_per_delivery")),
    ("lost", 6, lambda r: str(r["lost"])),
    (" limit", -6, _notes),
]
"""Fan-out: ``x base`` is server CPU per delivery relative to the baseline (``x inl``: to inline)."""


def _by_role(key: str, role: str, digits: int) -> Column:
    return (role, 10, lambda r: _num(r[key][role], digits))


ROLE_COLUMNS: list[Column] = [
    _TARGET,
    _SUBSCRIBERS,
    _MODE,
    *(_by_role("cpu_us_per_delivery_by_role", role, 1) for role in ROLES),
    ("| at rest %:", 11, lambda r: ""),
    *(_by_role("idle_cpu_pct_by_role", role, 1) for role in ROLES),
]
"""Fan-out server CPU per delivery by process role (µs), then the CPU at rest by role (% of a core)."""

THREAD_COLUMNS: list[Column] = [
    ("role", -11, lambda r: r["role"]),
    ("thread", -18, lambda r: r["thread"]),
    ("us/deliv", 8, _field("us_per_delivery")),
    ("% core", 7, _field("pct")),
    ("idle %", 7, _field("idle_pct")),
]
"""The threads that used the most CPU in a fan-out window (``--threads``)."""


def format_report(results: Sequence[dict[str, Any]]) -> str:
    """Every table that applies to ``results``."""
    parts = []
    echo = [r for r in results if r["scenario"] == "echo"]
    fanout = [r for r in results if r["scenario"] == "fanout"]
    if echo:
        parts.append("echo round trip\n" + format_table(ECHO_COLUMNS, echo))
    if fanout:
        parts.append("room fan-out\n" + format_table(FANOUT_COLUMNS, fanout))
        if any(r["target"] == "mesh-ray" for r in fanout):
            title = "fan-out server CPU per delivery by process role (us), and at rest (% of a core)"
            parts.append(f"{title}\n{format_table(ROLE_COLUMNS, fanout)}")
        for r in fanout:
            if r.get("threads"):
                title = f"by thread, {r['target']} S={r['subscribers']} {mode_label(r)}"
                switches = ", ".join(f"{k} {v}" for k, v in r["context_switches_per_publish"].items())
                table = format_table(THREAD_COLUMNS, r["threads"][:15])
                parts.append(f"{title}\n{table}\ncontext switches per publish: {switches}")
    return "\n\n".join(parts)
