"""Stable key -> shard assignment shared by every process of a deployment."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import TypeVar

__all__ = ["group_by_shard", "shard_index"]

K = TypeVar("K", bound=str)


def shard_index(key: str, shard_count: int) -> int:
    """The shard that owns ``key``: CRC-32 of its UTF-8 bytes modulo ``shard_count``.

    Python's ``hash()`` is salted per process, so it cannot be used across processes.
    """
    return zlib.crc32(key.encode()) % shard_count


def group_by_shard(keys: Iterable[K], shard_count: int) -> dict[int, list[K]]:
    """Group keys by owning shard index, keeping their order within each group."""
    groups: dict[int, list[K]] = {}
    for key in keys:
        groups.setdefault(shard_index(key, shard_count), []).append(key)
    return groups
