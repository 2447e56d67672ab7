"""The fan-out plot: deliveries/s, latency and server CPU per delivery against subscribers (PNG).

matplotlib is optional (the ``[bench]`` extra): :func:`write_plot` raises ImportError without it,
and the harness then says how to install it and keeps the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import mode_label


def write_plot(results: Sequence[dict[str, Any]], path: Path, title: str = "") -> bool:
    """Plot the fan-out records of ``results`` into ``path``; False if there are none to plot.

    One line per (target, mode) across subscriber counts; latency shows p50 (solid) and p99
    (dashed). The x axis is logarithmic (S=100 and 1000 are the default points).
    """
    fanout = [r for r in results if r["scenario"] == "fanout" and r["deliveries"]]
    if not fanout:
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a benchmark machine
    import matplotlib.pyplot as plt

    series: dict[str, list[dict[str, Any]]] = {}
    for r in fanout:
        series.setdefault(f"{r['target']}, {mode_label(r)}", []).append(r)
    figure, (rate_ax, latency_ax, cpu_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    for label, records in series.items():
        records.sort(key=lambda r: r["subscribers"])
        x = [r["subscribers"] for r in records]
        rate_line = rate_ax.plot(x, [r["deliveries_per_s"] for r in records], marker="o", label=label)[0]
        color = rate_line.get_color()
        latency_ax.plot(x, [r["p50_us"] / 1000 for r in records], marker="o", color=color)
        latency_ax.plot(x, [r["p99_us"] / 1000 for r in records], marker="x", color=color, linestyle="--")
        cpu_ax.plot(x, [r["server_cpu_us_per_delivery"] for r in records], marker="o", color=color)
    for axis, ylabel in (
        (rate_ax, "deliveries/s"),
        (latency_ax, "delivery latency, ms (p50 solid, p99 dashed)"),
        (cpu_ax, "server CPU µs per delivery"),
    ):
        axis.set_xscale("log")
        axis.set_xlabel("subscribers")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    latency_ax.set_yscale("log")  # under load p99 can be 100x p50
    rate_ax.legend(fontsize="small")
    figure.suptitle(title or "mesh-actors room fan-out")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return True
