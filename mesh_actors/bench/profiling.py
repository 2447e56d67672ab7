"""Optional ``py-spy record`` of the mesh processes during a fan-out window (``--profile DIR``).

Sampling slows a Ray server a lot: use profiled runs for where the time goes, not for numbers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

Profile = tuple[str, int, Path, asyncio.subprocess.Process]
"""(role, pid, output file, the py-spy process)."""


async def start_profiles(
    directory: Path, label: str, role_pids: dict[str, list[int]], seconds: float
) -> list[Profile]:
    """Start ``py-spy record`` (raw collapsed stacks) on the serve/gateway/shard processes."""
    started = []
    for role in ("serve", "gateway", "shard"):
        for pid in role_pids.get(role, []):
            output = directory / f"{label}-{role}-{pid}.txt"
            process = await asyncio.create_subprocess_exec(
                "py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(output),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            started.append((role, pid, output, process))
    return started


async def collect_profiles(profiles: list[Profile]) -> dict[str, Any]:
    """Wait for every py-spy and summarize its output, keyed ``<role>-<pid>``."""
    summary: dict[str, Any] = {}
    for role, pid, output, process in profiles:
        await process.wait()
        summary[f"{role}-{pid}"] = summarize_profile(output)
    return summary


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions of a py-spy raw file: by own samples (leaf) and by samples under them (total)."""
    leaf: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    if path.exists():
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            samples += count
            frames = [_frame_name(frame) for frame in stack.split(";")[1:]]  # [0] is the thread
            if frames:
                leaf[frames[-1]] += count
            for name in set(frames):
                total[name] += count
    share = 100 / samples if samples else 0.0
    return {
        "samples": samples,
        "leaf": [(name, round(n * share, 1)) for name, n in leaf.most_common(top)],
        "total": [(name, round(n * share, 1)) for name, n in total.most_common(top)],
    }


def _frame_name(frame: str) -> str:
    """``function (path/file.py:123)`` -> ``function (file.py)``: aggregate over line numbers."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({file})" if file else name
