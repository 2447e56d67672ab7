"""The two client dialects of the Mesh protocol: ``mesh/`` (Mesh) and ``rt/`` (@prsm/realtime).

Both dialects are the same protocol with a different prefix on built-in command and push names. A
server that serves both remembers which prefix each connection (and later, each subscription) used
and answers in kind (docs/protocol.md#dialects).
"""

from __future__ import annotations

import enum

__all__ = ["Dialect", "split_builtin"]


class Dialect(enum.Enum):
    """A client dialect, identified by the prefix of its built-in names."""

    MESH = "mesh/"
    RT = "rt/"

    @property
    def prefix(self) -> str:
        """The prefix of built-in command and push names in this dialect."""
        return self.value

    def name_of(self, suffix: str) -> str:
        """The full wire name of a built-in, e.g. ``Dialect.RT.name_of("join-room")``."""
        return self.value + suffix


def split_builtin(command: str) -> tuple[Dialect, str] | None:
    """Split a prefixed command name into its dialect and suffix; ``None`` if it has no prefix."""
    if command.startswith("mesh/"):
        return Dialect.MESH, command[5:]
    if command.startswith("rt/"):
        return Dialect.RT, command[3:]
    return None
