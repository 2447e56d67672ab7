"""Metadata (and later record) merge strategies: replace, merge, deepMerge.

See docs/protocol.md#merge-strategies.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["MergeStrategy", "apply_strategy", "deep_merge"]


class MergeStrategy(enum.StrEnum):
    """How a new value is combined with the stored one; the values are the wire spellings."""

    REPLACE = "replace"
    MERGE = "merge"
    DEEP_MERGE = "deepMerge"


def _is_plain_object(value: Any) -> bool:
    return type(value) is dict


def deep_merge(target: Any, source: Any) -> Any:
    """Recursively merge ``source`` into a copy of ``target``; non-objects from source win."""
    if not (_is_plain_object(target) and _is_plain_object(source)):
        return source
    merged = dict(target)
    for key, value in source.items():
        merged[key] = deep_merge(merged[key], value) if key in merged else value
    return merged


def apply_strategy(existing: Any, new: Any, strategy: MergeStrategy) -> Any:
    """The value to store when ``new`` is written over ``existing`` with ``strategy``."""
    if strategy is MergeStrategy.MERGE and _is_plain_object(existing) and _is_plain_object(new):
        return {**existing, **new}
    if strategy is MergeStrategy.DEEP_MERGE:
        return deep_merge(existing, new)
    return new
