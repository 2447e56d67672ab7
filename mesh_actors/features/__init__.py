"""One package per owner kind, and the registry of the kinds a deployment runs.

A feature package holds its owner actor (``shard``), its storage port (``port``) and Redis
adapter (``redis``), its registration (``kind``), its built-in commands (``commands``) and its
part of the server API (``api``). docs/adding-a-feature.md is the checklist for a new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..actors.registry import OwnerKind, check_kinds
from . import connections, rooms
from .connections import commands as connection_commands
from .rooms import commands as room_commands
from .services import CommandContext

__all__ = ["BUILTINS", "KINDS"]

KINDS: tuple[OwnerKind[Any], ...] = (connections.CONNECTIONS, rooms.ROOMS)
"""Every owner kind, in registration order (runtimes rebuild them in dependency order)."""
check_kinds(KINDS)

BUILTINS: Mapping[str, Callable[[CommandContext], Awaitable[Any]]] = {
    **connection_commands.COMMANDS,
    **room_commands.COMMANDS,
}
"""Every built-in command by name suffix (exposed as ``mesh/<suffix>`` and ``rt/<suffix>``)."""
