"""Membership commands of one connection apply in the order it sent them (no ghost members).

A join and a leave of the same room written in one TCP write used to leave the member behind for
good: the join waited for another owner's Redis write before the room owner added the member, so
the leave ran first and found nothing to remove. The room owner is now the single owner of
membership, so the two apply in the order they arrive.
"""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from mesh_actors import MeshServer
from tests.conftest import ServerFactory, url_of
from tests.wire import RawClient, client_frame, raw_client

CLIENTS = 20
PAIRS_PER_CLIENT = 50  # 1000 join/leave pairs in all
ROOMS = 5


def pipelined_pairs(client: int) -> bytes:
    """``PAIRS_PER_CLIENT`` join + leave pairs, every frame of them in one buffer (one write)."""
    frames = []
    for pair in range(PAIRS_PER_CLIENT):
        room = f"room-{(client + pair) % ROOMS}"
        for offset, command in enumerate(("mesh/join-room", "mesh/leave-room")):
            request = {"id": pair * 2 + offset, "command": command, "payload": {"roomName": room}}
            frames.append(client_frame(orjson.dumps(request)))
    return b"".join(frames)


async def all_answers(client: RawClient, count: int) -> list[dict[str, object]]:
    return [await client.wait_for(lambda frame: "id" in frame, timeout=30) for _ in range(count)]


async def connections_gone(server: MeshServer, ids: list[str], timeout: float = 30) -> None:
    """Wait until none of ``ids`` is registered any more (their clean-ups ran).

    The clean-ups run in the gateways' processes on Ray, so the test asks the deployment.
    """
    async with asyncio.timeout(timeout):
        while any([await server.connection_manager.exists(cid) for cid in ids]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the event happens in other processes: poll, bounded


async def test_pipelined_join_and_leave_pairs_leave_no_member(
    make_any_server: ServerFactory, redis_url: str
) -> None:
    server = await make_any_server(shared=True)  # Ray: two gateways on one port
    prefix = server.settings.key_prefix
    url = url_of(server)
    clients = [await raw_client(url).__aenter__() for _ in range(CLIENTS)]
    try:
        for index, client in enumerate(clients):
            client.ws.transport.write(pipelined_pairs(index))
        answers = await asyncio.gather(*(all_answers(c, 2 * PAIRS_PER_CLIENT) for c in clients))
        for replies in answers:
            assert [reply["payload"]["success"] for reply in replies] == [True] * len(replies)  # type: ignore[index]
        rooms = [f"room-{i}" for i in range(ROOMS)]
        # While the clients are still connected, every leave has been applied after its join.
        assert [await server.get_room_members(room) for room in rooms] == [[] for _ in rooms]
        members = [await server.is_in_room(room, c.connection_id or "") for room in rooms for c in clients]
        assert not any(members)
    finally:
        for client in clients:
            await client.close()
    await connections_gone(server, [c.connection_id or "" for c in clients])
    redis = aioredis.Redis.from_url(redis_url)
    try:
        room_keys = [key async for key in redis.scan_iter(match=f"{prefix}room:room-*")]
        connection_room_keys = [key async for key in redis.scan_iter(match=f"{prefix}connection:*:rooms")]
    finally:
        await redis.aclose()
    assert room_keys == [] and connection_room_keys == []
