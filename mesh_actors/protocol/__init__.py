"""The Mesh protocol core: frames, dialects, names, errors, payload models. Pure: no I/O."""

from __future__ import annotations

from .dialect import Dialect, split_builtin
from .errors import CodeError, command_not_found, error_payload, invalid_payload, is_error_payload
from .merge import MergeStrategy, apply_strategy, deep_merge
from .messages import (
    MISSING,
    CommandRequest,
    Event,
    Ignored,
    InvalidRequest,
    LatencyResponse,
    Pong,
    decode_frame,
    encode_frame,
    encode_push,
    encode_response,
)
from .websocket import text_frame

__all__ = [
    "MISSING",
    "CodeError",
    "CommandRequest",
    "Dialect",
    "Event",
    "Ignored",
    "InvalidRequest",
    "LatencyResponse",
    "MergeStrategy",
    "Pong",
    "apply_strategy",
    "command_not_found",
    "decode_frame",
    "deep_merge",
    "encode_frame",
    "encode_push",
    "encode_response",
    "error_payload",
    "invalid_payload",
    "is_error_payload",
    "split_builtin",
    "text_frame",
]
