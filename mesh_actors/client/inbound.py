"""Decoding what the server sends to a client (docs/protocol.md#wire-format).

The server side of the protocol (:func:`mesh_actors.protocol.decode_frame`) classifies requests;
a client sees the other half: *responses*, which carry the ``id`` of one of its requests, and
*pushes*, which never carry an ``id``. Decoding never raises, so a malformed frame cannot take
the read loop down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..protocol.messages import Ignored, parse_object

__all__ = ["Ignored", "Inbound", "Push", "Response", "decode_inbound"]


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to one of our requests, matched by ``id`` only (the ``command`` is not checked,
    as in the reference client). A response without a ``payload`` key (a handler that returned
    nothing) has ``payload=None``."""

    id: Any
    command: Any
    payload: Any


@dataclass(frozen=True, slots=True)
class Push:
    """A frame the server sent on its own: heartbeat, ``assign-id``, built-in push or broadcast."""

    command: str
    payload: Any


Inbound = Response | Push | Ignored


def decode_inbound(data: str | bytes) -> Inbound:
    """Classify one inbound message: an object with an ``id`` key is a response, an object with a
    string ``command`` and no ``id`` is a push, anything else is ignored."""
    frame = parse_object(data)
    if type(frame) is Ignored:
        return frame
    assert isinstance(frame, dict)
    if "id" in frame:
        return Response(frame["id"], frame.get("command"), frame.get("payload"))
    command = frame.get("command")
    if type(command) is not str:
        return Ignored('push without a string "command"')
    return Push(command, frame.get("payload"))
