"""WebSocket framing as the gateway reads it (gateway/fastpath.py splits client frames itself).

Frames are written raw to the client's socket, so the tests control exactly what the server
parses: several frames in one write, frames of every length encoding, a frame spread over many
TCP reads, control frames between data frames, fragments, and frames it must refuse.
"""

from __future__ import annotations

import os
import struct

import orjson
import pytest

from mesh_actors import MeshServer
from tests.conftest import ServerFactory, expose_test_commands, url_of
from tests.wire import RawClient, client_frame, raw_client


@pytest.fixture
async def server(make_any_server: ServerFactory) -> MeshServer:
    return await make_any_server(setup=expose_test_commands)


@pytest.fixture
async def inline_server(make_server: ServerFactory) -> MeshServer:
    """For the test that looks inside the gateway."""
    return await make_server(setup=expose_test_commands)


def echo_frame(request_id: int, payload: object) -> bytes:
    return client_frame(orjson.dumps({"id": request_id, "command": "echo", "payload": payload}))


def write(client: RawClient, data: bytes) -> None:
    client.ws.transport.write(data)


async def answers(client: RawClient, count: int) -> list[object]:
    frames = [await client.wait_for(lambda f: "id" in f) for _ in range(count)]
    return [(frame["id"], frame["payload"]) for frame in frames]


async def test_several_frames_in_one_write_are_answered_in_order(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        write(c, b"".join(echo_frame(i, i) for i in range(20)))
        assert await answers(c, 20) == [(i, i) for i in range(20)]


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 900_000])
async def test_every_length_encoding(server: MeshServer, size: int) -> None:
    """7-bit, 16-bit and 64-bit lengths; the largest frame spans many reads of the socket."""
    text = "x" * size
    async with raw_client(url_of(server)) as c:
        write(c, echo_frame(1, text))
        assert await answers(c, 1) == [(1, text)]


async def test_a_frame_written_byte_by_byte(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        frame = echo_frame(7, "slow")
        for i in range(len(frame)):
            write(c, frame[i : i + 1])  # one syscall each (TCP_NODELAY): many small reads
        write(c, echo_frame(8, "next"))
        assert await answers(c, 2) == [(7, "slow"), (8, "next")]


async def test_control_frames_between_data_frames(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        write(c, echo_frame(1, "a") + client_frame(b"are you there", 0x9) + echo_frame(2, "b"))
        assert await answers(c, 2) == [(1, "a"), (2, "b")]
        pong = await c.ws.ping()  # the server still answers pings
        await pong


async def test_a_fragmented_message_then_whole_ones_keep_their_order(server: MeshServer) -> None:
    body = orjson.dumps({"id": 2, "command": "echo", "payload": "fragmented"})
    async with raw_client(url_of(server)) as c:
        write(
            c,
            echo_frame(1, "before")
            + client_frame(body[:10], 0x1, fin=False)
            + client_frame(body[10:], 0x0)
            + echo_frame(3, "after"),
        )
        assert await answers(c, 3) == [(1, "before"), (2, "fragmented"), (3, "after")]


async def test_binary_frames_are_read_as_text(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        write(c, client_frame(orjson.dumps({"id": 4, "command": "echo", "payload": "bin"}), 0x2))
        assert await answers(c, 1) == [(4, "bin")]


async def test_an_unmasked_frame_is_a_protocol_error(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        write(c, client_frame(b'{"id": 1, "command": "echo"}', masked=False))
        assert await c.closed() == 1002


async def test_a_frame_over_the_size_limit_closes_with_1009(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**40) + os.urandom(4)
        write(c, header)  # only the header: refused before any payload is buffered
        assert await c.closed() == 1009


async def test_data_after_a_close_frame_is_ignored(server: MeshServer) -> None:
    async with raw_client(url_of(server)) as c:
        write(c, client_frame(struct.pack("!H", 1000), 0x8) + echo_frame(1, "too late"))
        assert await c.closed() == 1000
        assert [frame for frame in c.frames if "id" in frame] == []


async def test_frames_are_split_by_the_gateway_until_a_fragment_arrives(inline_server: MeshServer) -> None:
    """The own splitter is really in use (the tests above would pass with websockets' parser too),
    and hands the connection over to websockets for good after a fragmented message."""
    gateway = inline_server.local_gateway
    assert gateway is not None
    async with raw_client(url_of(inline_server)) as c:
        write(c, echo_frame(1, "a"))
        assert await answers(c, 1) == [(1, "a")]
        websocket = gateway.connections[c.connection_id].websocket
        assert websocket.splits_frames is True
        write(c, client_frame(b'{"id": 2, "command": ', fin=False) + client_frame(b'"echo"}', 0x0))
        await c.wait_for(lambda f: f.get("id") == 2)
        assert websocket.splits_frames is False
        write(c, echo_frame(3, "still fine"))
        assert await answers(c, 1) == [(3, "still fine")]
