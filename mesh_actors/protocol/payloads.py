"""Pydantic models of the built-in command payloads (docs/protocol.md#built-in-commands), with the wire field
names.

Validation failures become ``EINVALID`` error payloads (see :func:`parse_payload`), never exceptions
that reach the socket.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from .errors import CodeError, invalid_payload
from .merge import MergeStrategy

__all__ = [
    "ConnectionIdPayload",
    "MetadataOptions",
    "RoomPayload",
    "SetMetadataPayload",
    "parse_payload",
]

MAX_NAME_LENGTH = 512
"""Longest room name or connection id accepted from a client (characters)."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]


class _Payload(BaseModel):
    # Unknown keys are ignored (clients may send more than we read), values are not coerced.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=True)


class RoomPayload(_Payload):
    """``{roomName}``: join-room, leave-room, get-room-metadata."""

    room_name: Name = Field(alias="roomName")


class ConnectionIdPayload(_Payload):
    """``{connectionId}``: get-connection-metadata."""

    connection_id: Name = Field(alias="connectionId")


class MetadataOptions(_Payload):
    """``{strategy?}``: how new metadata combines with the stored value."""

    # Not strict: the wire sends the strategy as a string, which selects the enum member.
    strategy: Annotated[MergeStrategy, Field(strict=False)] = MergeStrategy.REPLACE


class SetMetadataPayload(_Payload):
    """``{metadata, options?}``: set-my-connection-metadata."""

    metadata: Any = None
    options: MetadataOptions = MetadataOptions()


P = TypeVar("P", bound=BaseModel)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(loc) for loc in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_payload(model: type[P], command: str, payload: Any) -> P:
    """Validate ``payload`` against ``model``; raise :class:`CodeError` ``EINVALID`` if it fails."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        details = f"payload must be a JSON object, not {_json_type(payload)}"
    else:
        try:
            return model.model_validate(payload)
        except ValidationError as error:
            details = _describe(error)
    body = invalid_payload(command, details)
    raise CodeError(body["error"], body["code"], body["name"])


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
