"""Mesh frames: decoding what a peer sent and encoding what we send (docs/protocol.md#wire-format).

Every frame is one JSON object ``{"id"?, "command", "payload"?}`` in a text message. Decoding never
raises: input that the protocol says to ignore becomes an :class:`Ignored` event, so a malformed
frame can never take the read loop down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .names import LATENCY_RESPONSE, PONG

__all__ = [
    "MISSING",
    "CommandRequest",
    "Event",
    "Ignored",
    "InvalidRequest",
    "LatencyResponse",
    "Pong",
    "decode_frame",
    "encode_frame",
    "encode_push",
    "encode_response",
    "parse_object",
]


class _Missing:
    """Sentinel for "no payload key": a handler that returned nothing (JavaScript ``undefined``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A frame to run as a command: it has an ``id`` and a string ``command``."""

    id: Any
    command: str
    payload: Any


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A frame with an ``id`` whose ``command`` is not a string: answered with an error payload."""

    id: Any
    command: Any
    reason: str


@dataclass(frozen=True, slots=True)
class Pong:
    """The client's answer to ``ping`` (with or without an id)."""


@dataclass(frozen=True, slots=True)
class LatencyResponse:
    """The client's answer to ``latency:request``."""

    payload: Any


@dataclass(frozen=True, slots=True)
class Ignored:
    """Input the protocol says to drop silently; ``reason`` is for counters and debug logs."""

    reason: str


Event = CommandRequest | InvalidRequest | Pong | LatencyResponse | Ignored

_PONG = Pong()


def parse_object(data: str | bytes) -> dict[str, Any] | Ignored:
    """Parse one message as a JSON object; anything else is :class:`Ignored` (never raises).

    Shared by the server's :func:`decode_frame` and the client's inbound decoding.
    """
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Ignored("not JSON")
    if type(frame) is not dict:
        return Ignored("not a JSON object")
    return frame


def decode_frame(data: str | bytes) -> Event:
    """Decode one inbound text (or binary, treated as text) message into an event.

    Rules (docs/protocol.md#malformed-input): non-JSON, non-object JSON and objects without ``id`` are
    ignored, except
    heartbeat replies which count with or without an id; ``id`` is opaque and may be any JSON value,
    including ``0`` and ``null``.
    """
    frame = parse_object(data)
    if type(frame) is Ignored:
        return frame
    assert isinstance(frame, dict)
    command = frame.get("command")
    if command == PONG:
        return _PONG
    if command == LATENCY_RESPONSE:
        return LatencyResponse(frame.get("payload"))
    if "id" not in frame:
        return Ignored("no id")
    if type(command) is not str:
        return InvalidRequest(frame["id"], command, '"command" must be a string')
    return CommandRequest(frame["id"], command, frame.get("payload"))


def _default(value: Any) -> Any:
    """orjson fallback: pydantic models, sets and tuples become JSON values."""
    model_dump = getattr(value, "model_dump", None)
    if model_dump is not None:
        return model_dump(mode="json", by_alias=True)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_frame(frame: dict[str, Any]) -> bytes:
    """Encode a frame object as compact UTF-8 JSON (what ``JSON.stringify`` would produce)."""
    return orjson.dumps(frame, default=_default, option=orjson.OPT_NON_STR_KEYS)


def encode_response(request_id: Any, command: Any, payload: Any = MISSING) -> bytes:
    """Encode the response to a request; ``MISSING`` omits the payload key like ``undefined``."""
    if payload is MISSING:
        return encode_frame({"id": request_id, "command": command})
    return encode_frame({"id": request_id, "command": command, "payload": payload})


def encode_push(command: str, payload: Any) -> bytes:
    """Encode a server push (no id)."""
    return encode_frame({"command": command, "payload": payload})
