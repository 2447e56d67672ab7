"""Error payloads (docs/protocol.md#error-payloads) and malformed input (docs/protocol.md#malformed-input):
answered or dropped, never fatal."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from mesh_actors import CodeError, MeshServer
from tests.conftest import ServerFactory, url_of
from tests.wire import raw_client


class Teapot(Exception):
    code = "ETEAPOT"


def setup(server: MeshServer) -> None:
    server.expose_command("echo", lambda ctx: ctx.payload)  # a sync handler works too
    server.expose_command("fails", lambda ctx: (_ for _ in ()).throw(Exception("This is a test error")))

    @server.command("code-error")
    async def code_error(ctx: Any) -> None:
        raise CodeError("nope", code="EFORBIDDEN", name="AuthError")

    @server.command("value-error")
    async def value_error(ctx: Any) -> None:
        raise ValueError("bad value")

    @server.command("teapot")
    async def teapot(ctx: Any) -> None:
        raise Teapot("short and stout")

    @server.command("returns-nothing")
    async def returns_nothing(ctx: Any) -> None:
        return None

    @server.command("returns-object")
    async def returns_object(ctx: Any) -> object:
        return object()

    @server.command("slow")
    async def slow(ctx: Any) -> str:
        await ctx.state_event.wait()
        return "slow"

    server.expose_command("fast", lambda ctx: "fast")

    release = asyncio.Event()

    def with_event(ctx: Any) -> None:
        ctx.state_event = release

    server.use_middleware_with_command("slow", [with_event])
    server.release_slow = release  # type: ignore[attr-defined]


@pytest.fixture
async def server(make_any_server: ServerFactory) -> MeshServer:
    """On each runtime; on Ray one deployment serves every test of this module."""
    return await make_any_server(setup=setup, shared=True)


@pytest.fixture
async def inline_server(make_server: ServerFactory) -> MeshServer:
    """For tests that reach into the process (the slow handler's event, gateway counters)."""
    return await make_server(setup=setup)


async def test_unknown_command_is_enotfound(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        response = await c.request("unknown-command", {})
    assert response == {
        "id": response["id"],
        "command": "unknown-command",
        "payload": {
            "error": 'Command "unknown-command" not found',
            "code": "ENOTFOUND",
            "name": "CommandError",
        },
    }


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        ("fails", {"error": "This is a test error", "code": "ESERVER", "name": "Error"}),
        ("code-error", {"error": "nope", "code": "EFORBIDDEN", "name": "AuthError"}),
        ("value-error", {"error": "bad value", "code": "ESERVER", "name": "ValueError"}),
        ("teapot", {"error": "short and stout", "code": "ETEAPOT", "name": "Teapot"}),
        ("ping", {"error": 'Command "ping" not found', "code": "ENOTFOUND", "name": "CommandError"}),
    ],
)
async def test_handler_errors_become_error_payloads(
    server: MeshServer, command: str, payload: object
) -> None:
    async with raw_client(url_of(server)) as c:
        assert await c.call(command) == payload
        assert await c.call("echo", "still alive") == "still alive"


async def test_handler_returning_nothing_omits_payload(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        response = await c.request("returns-nothing", request_id=7)
    assert response == {"id": 7, "command": "returns-nothing"}


async def test_unserializable_result_is_an_error_payload(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        payload = await c.call("returns-object")
    assert payload["code"] == "ESERVER" and "not JSON-serializable" in payload["error"]


@pytest.mark.parametrize("request_id", [0, None, "abc", {"nested": [1]}, 1.5, 99999999999])
async def test_id_is_opaque_and_echoed_verbatim(server: MeshServer, request_id: object) -> None:
    async with raw_client(url_of(server)) as c:
        response = await c.request("echo", "x", request_id=request_id)
    assert response == {"id": request_id, "command": "echo", "payload": "x"}


async def test_large_payload_round_trips(server: MeshServer) -> None:
    payload = {
        "items": [f"item-{i}" for i in range(1000)],
        "nested": {"deep": {"deeper": [1, 2, {"x": None}]}},
    }
    async with raw_client(url_of(server)) as c:
        assert await c.call("echo", payload) == payload


async def test_responses_can_arrive_out_of_order(inline_server: MeshServer) -> None:
    server = inline_server
    async with raw_client(url_of(server)) as c:
        await c.send({"id": 1, "command": "slow", "payload": {}})
        fast = await c.request("fast", request_id=2)
        assert fast["payload"] == "fast"
        assert not any(frame.get("id") == 1 for frame in c.frames)  # slow is still running
        server.release_slow.set()  # type: ignore[attr-defined]
        slow = await c.wait_for(lambda f: f.get("id") == 1)
    assert slow == {"id": 1, "command": "slow", "payload": "slow"}


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "{broken",
        "null",
        "[1, 2]",
        "42",
        '"a string"',
        '{"command": "echo", "payload": {"noid": true}}',
        b'{"command": "echo", "payload": "binary without id"}',
        '{"id": 5, "command": "pong", "payload": {}}',
        '{"id": 6, "command": "latency:response", "payload": {}}',
        "",
    ],
)
async def test_ignored_input_gets_no_answer_and_the_connection_survives(
    server: MeshServer, message: str
) -> None:
    async with raw_client(url_of(server)) as c:
        await c.send(message)
        # The next frame must be the answer to this sentinel: the ignored input produced nothing.
        sentinel = await c.request("echo", "after", request_id="sentinel")
        assert sentinel["payload"] == "after"
        assert c.frames == []


async def test_binary_frames_are_read_as_text(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        await c.send(b'{"id": 3, "command": "echo", "payload": "bin"}')
        response = await c.wait_for(lambda f: f.get("id") == 3)
    assert response == {"id": 3, "command": "echo", "payload": "bin"}


@pytest.mark.parametrize("command", [None, 5, {"a": 1}, ["x"]])
async def test_non_string_command_with_id_gets_einvalid(server: MeshServer, command: object) -> None:
    async with raw_client(url_of(server)) as c:
        await c.send({"id": 9, "command": command, "payload": {}})
        response = await c.wait_for(lambda f: f.get("id") == 9)
    assert response == {
        "id": 9,
        "command": command,
        "payload": {
            "error": 'Invalid frame: "command" must be a string',
            "code": "EINVALID",
            "name": "ProtocolError",
        },
    }


async def test_ignored_input_is_counted(inline_server: MeshServer) -> None:
    server = inline_server
    gateway = server.local_gateway
    assert gateway is not None
    async with raw_client(url_of(server)) as c:
        await c.send("not json")
        await c.send('{"command": "x"}')
        await c.call("echo", 1)
    assert gateway.counters == {"not JSON": 1, "no id": 1}


async def test_a_text_message_that_is_not_utf8_closes_with_1007(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        await c.ws.send(b'{"id": 1, "command": "echo", "payload": "\xff\xfe"}', text=True)
        assert await c.closed() == 1007  # "invalid frame payload data" (RFC 6455)


async def test_fragmented_messages_keep_their_order_with_whole_ones(server: MeshServer) -> None:
    """A fragmented message takes websockets' assembler, whole ones a direct path: the answers still
    come back in the order the commands were sent (echo answers synchronously, in arrival order)."""
    async with raw_client(url_of(server)) as c:
        await c.send({"id": 1, "command": "echo", "payload": 1})
        parts = ['{"id": 2, "command": ', '"echo", "payload": 2}']
        await c.ws.send(iter(parts))  # an iterable is sent as one fragmented text message
        for i in range(3, 6):
            await c.send({"id": i, "command": "echo", "payload": i})
        answers = [await c.wait_for(lambda f: "id" in f) for _ in range(5)]
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]


async def test_commands_sent_before_the_connection_is_ready_are_all_answered(server: MeshServer) -> None:
    """Frames that arrive while the gateway registers the connection are kept, in order."""
    import websockets

    async with websockets.connect(url_of(server)) as ws:
        for i in range(100):  # sent at once, before reading the assign-id frames
            await ws.send(f'{{"id": {i}, "command": "echo", "payload": {i}}}')
        ids = []
        while len(ids) < 100:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if "id" in frame:
                ids.append(frame["id"])
    assert ids == list(range(100))
