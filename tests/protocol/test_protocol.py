"""The pure protocol core: frames, errors, merge strategies, heartbeat, WebSocket framing."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from mesh_actors.protocol import (
    MISSING,
    CodeError,
    CommandRequest,
    Dialect,
    Ignored,
    InvalidRequest,
    LatencyResponse,
    MergeStrategy,
    Pong,
    apply_strategy,
    decode_frame,
    encode_push,
    encode_response,
    error_payload,
    split_builtin,
    text_frame,
)
from mesh_actors.protocol.heartbeat import HeartbeatState, PingAction


@pytest.mark.parametrize(
    ("data", "event"),
    [
        ('{"id": 1, "command": "echo", "payload": {"a": 1}}', CommandRequest(1, "echo", {"a": 1})),
        ('{"id": 0, "command": "x"}', CommandRequest(0, "x", None)),
        ('{"id": null, "command": "x", "payload": 3}', CommandRequest(None, "x", 3)),
        (b'{"id": "s", "command": "x", "payload": []}', CommandRequest("s", "x", [])),
        ('{"id": 1, "command": 7}', InvalidRequest(1, 7, '"command" must be a string')),
        ('{"command": "pong"}', Pong()),
        ('{"id": 4, "command": "pong", "payload": {}}', Pong()),
        ('{"id": 4, "command": "latency:response", "payload": {"t": 1}}', LatencyResponse({"t": 1})),
        ('{"command": "echo", "payload": 1}', Ignored("no id")),
        ("not json", Ignored("not JSON")),
        ("", Ignored("not JSON")),
        ("null", Ignored("not a JSON object")),
        ("[1]", Ignored("not a JSON object")),
        ('"str"', Ignored("not a JSON object")),
        ("12", Ignored("not a JSON object")),
        (b"\xff\xfe", Ignored("not JSON")),
    ],
)
def test_decode_frame(data: str | bytes, event: object) -> None:
    assert decode_frame(data) == event


def test_encode_is_compact_and_keeps_non_ascii() -> None:
    assert (
        encode_response(1, "echo", {"text": "héllo", "n": [1, 2]})
        == '{"id":1,"command":"echo","payload":{"text":"héllo","n":[1,2]}}'.encode()
    )
    assert encode_response("a", "noret", MISSING) == b'{"id":"a","command":"noret"}'
    assert encode_response(2, "x", None) == b'{"id":2,"command":"x","payload":null}'
    assert encode_push("hello", "world") == b'{"command":"hello","payload":"world"}'


def test_encode_accepts_sets_tuples_and_int_keys() -> None:
    assert encode_push("p", {"t": (1, 2), 3: "x"}) == b'{"command":"p","payload":{"t":[1,2],"3":"x"}}'


def test_encode_rejects_non_json_values() -> None:
    with pytest.raises(TypeError):
        encode_push("p", object())


@pytest.mark.parametrize(
    ("error", "payload"),
    [
        (CodeError("m", "ECODE", "Named"), {"error": "m", "code": "ECODE", "name": "Named"}),
        (CodeError("m"), {"error": "m", "code": "ESERVER", "name": "CodeError"}),
        (Exception("plain"), {"error": "plain", "code": "ESERVER", "name": "Error"}),
        (KeyError("k"), {"error": "'k'", "code": "ESERVER", "name": "KeyError"}),
    ],
)
def test_error_payload(error: BaseException, payload: dict[str, str]) -> None:
    assert error_payload(error) == payload


def test_dialects() -> None:
    assert split_builtin("mesh/join-room") == (Dialect.MESH, "join-room")
    assert split_builtin("rt/join-room") == (Dialect.RT, "join-room")
    assert split_builtin("echo") is None
    assert Dialect.RT.name_of("assign-id") == "rt/assign-id"


@pytest.mark.parametrize(
    ("existing", "new", "strategy", "result"),
    [
        ({"a": 1}, {"b": 2}, MergeStrategy.REPLACE, {"b": 2}),
        ({"a": 1, "b": 1}, {"b": 2}, MergeStrategy.MERGE, {"a": 1, "b": 2}),
        ({"a": {"x": 1}}, {"a": {"y": 2}}, MergeStrategy.MERGE, {"a": {"y": 2}}),
        ({"a": {"x": 1}}, {"a": {"y": 2}}, MergeStrategy.DEEP_MERGE, {"a": {"x": 1, "y": 2}}),
        ({"a": [1, 2]}, {"a": [3]}, MergeStrategy.DEEP_MERGE, {"a": [3]}),
        ("text", {"a": 1}, MergeStrategy.MERGE, {"a": 1}),
        ({"a": 1}, "text", MergeStrategy.DEEP_MERGE, "text"),
        (None, {"a": 1}, MergeStrategy.DEEP_MERGE, {"a": 1}),
        ([1], [2], MergeStrategy.MERGE, [2]),
    ],
)
def test_merge_strategies(existing: object, new: object, strategy: MergeStrategy, result: object) -> None:
    assert apply_strategy(existing, new, strategy) == result


def test_deep_merge_does_not_mutate_its_inputs() -> None:
    existing = {"a": {"x": 1}}
    apply_strategy(existing, {"a": {"y": 2}}, MergeStrategy.DEEP_MERGE)
    assert existing == {"a": {"x": 1}}


def test_heartbeat_drops_after_max_missed_pongs() -> None:
    state = HeartbeatState(max_missed_pongs=1)
    assert state.on_ping_tick() is PingAction.SEND_PING  # answered so far
    assert state.on_ping_tick() is PingAction.SEND_PING  # first miss tolerated
    assert state.on_ping_tick() is PingAction.CLOSE  # second miss: third tick after the last pong


def test_heartbeat_pong_resets() -> None:
    state = HeartbeatState(max_missed_pongs=0)
    assert state.on_ping_tick() is PingAction.SEND_PING
    state.on_pong()
    assert state.on_ping_tick() is PingAction.SEND_PING
    assert state.on_ping_tick() is PingAction.CLOSE


def test_latency_measurement_and_skip_while_unanswered() -> None:
    state = HeartbeatState()
    assert state.on_latency_response(1.0) is None  # nothing pending
    assert state.on_latency_tick(10.0)
    assert state.on_latency_response(10.25) == 250.0
    assert state.latency_ms == 250.0
    state.on_ping_tick()  # ping sent, not answered yet: a normal state, probes continue
    assert state.on_latency_tick(11.0)
    state.on_ping_tick()  # a whole interval without a pong: the client is missing pings
    assert not state.on_latency_tick(12.0)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_parses_as_one_unmasked_text_frame(size: int) -> None:
    payload = b"x" * size
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload
