"""Ray-only behaviour: two gateways on one port, gateway failover, shard restarts."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest

from mesh_actors import CodeError, MeshServer
from mesh_actors.client import MeshClient
from mesh_actors.features import KINDS
from mesh_actors.features.connections import CONNECTIONS
from mesh_actors.features.rooms import ROOMS
from mesh_actors.settings import MeshSettings
from tests.conftest import expose_test_commands, unique, url_of
from tests.wire import RawClient, raw_client

pytestmark = pytest.mark.ray

FAILOVER_BOUND = 5.0
"""Seconds within which a dead gateway's connections are gone from the shards (documented: Ray's
notice of the death, under a second, plus the drop itself; 5 s leaves room for a loaded CI machine)."""

NO_PROBES = 600.0
"""A watch interval no test outlives: deaths and drains must be noticed without the periodic probe."""


@pytest.fixture
async def deploy(ray_session: None, redis_url: str, key_prefix: str, ray_servers: list[MeshServer]) -> Any:
    from mesh_actors.runtime.ray import RayDeployment

    async def factory(gateways: int = 2, **options: Any) -> tuple[MeshServer, RayDeployment]:
        server = MeshServer(redis_url=redis_url, key_prefix=key_prefix)
        expose_test_commands(server)
        deployment = RayDeployment(server, gateways=gateways, host="127.0.0.1", port=0, **options)
        await deployment.start()
        ray_servers.append(server)
        return server, deployment

    return factory


async def clients_on_two_gateways(
    stack: AsyncExitStack, server: MeshServer, limit: int = 40
) -> tuple[RawClient, RawClient]:
    """Connect until two clients landed on different gateways (the kernel spreads connections)."""
    first: RawClient | None = None
    first_gateway = None
    for _ in range(limit):
        client = await stack.enter_async_context(raw_client(url_of(server)))
        assert client.connection_id is not None
        gateway = (await server.connection_manager.locate([client.connection_id]))[client.connection_id]
        if first is None:
            first, first_gateway = client, gateway
        elif gateway != first_gateway:
            return first, client
    raise AssertionError(f"all {limit} connections went to one gateway")


async def test_gateways_spread_over_the_cluster_nodes(shared_ray_server: MeshServer) -> None:
    import ray

    deployment = shared_ray_server.runtime.deployment  # type: ignore[attr-defined]
    nodes = await asyncio.gather(*(handle.node_id.remote() for handle in deployment.gateways.values()))
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(alive) >= 2, "the tests run on a two-node Ray cluster"
    assert len(set(nodes)) == 2 and set(nodes) <= alive


async def test_room_broadcast_and_metadata_cross_gateways(shared_ray_server: MeshServer) -> None:
    server = shared_ray_server
    room = unique("cross")
    async with AsyncExitStack() as stack:
        a, b = await clients_on_two_gateways(stack, server)
        await a.call("mesh/join-room", {"roomName": room})
        await b.call("rt/join-room", {"roomName": room})
        # A command on B's gateway broadcasts; the member on A's gateway receives it.
        assert await b.call("broadcast-room", {"roomName": room, "command": "news", "payload": {"n": 1}})
        assert (await a.push("news"))["payload"] == {"n": 1}
        assert (await b.push("news"))["payload"] == {"n": 1}
        # Metadata set through A's gateway is read through B's.
        await a.call("mesh/set-my-connection-metadata", {"metadata": {"name": "a"}})
        assert await b.call("mesh/get-connection-metadata", {"connectionId": a.connection_id}) == {
            "metadata": {"name": "a"}
        }
        # The driver's handle reaches both gateways too.
        assert await server.send_to([a.connection_id, b.connection_id], "direct", 7) == 2
        assert (await a.push("direct"))["payload"] == 7
        assert (await b.push("direct"))["payload"] == 7


async def test_gateway_failover(deploy: Any) -> None:
    server, deployment = await deploy(watch_interval=NO_PROBES)
    room = unique("failover")
    url = url_of(server)
    clients = [MeshClient(url, reconnect_initial_delay=0.05, reconnect_max_delay=0.3) for _ in range(8)]
    try:
        for client in clients:
            await asyncio.wait_for(client.connect(), 10)
            await client.join_room(room)
        before = {c.connection_id: c for c in clients}
        located = await server.connection_manager.locate(list(before))
        victim = located[clients[0].connection_id]
        doomed = {cid for cid, gid in located.items() if gid == victim}
        reconnected = [asyncio.get_running_loop().create_future() for _ in doomed]
        for future, cid in zip(reconnected, sorted(doomed), strict=True):
            before[cid].on("reconnect", lambda _id, f=future: f.done() or f.set_result(_id))

        killed_at = time.monotonic()
        await deployment.kill_gateway(victim)
        gone, dropped = await asyncio.wait_for(deployment.gateway_deaths.get(), FAILOVER_BOUND)
        detected_after = time.monotonic() - killed_at
        assert gone == victim and dropped == len(doomed)
        print(f"gateway death handled ({dropped} connection(s) dropped) {detected_after:.2f}s after the kill")
        assert detected_after < FAILOVER_BOUND

        new_ids = await asyncio.wait_for(asyncio.gather(*reconnected), 15)
        members = set(await server.get_room_members(room))
        assert doomed.isdisjoint(members)  # no ghosts
        assert set(new_ids) <= members  # the reconnected clients rejoined
        async with raw_client(url) as observer:
            present = await observer.call("mesh/join-room", {"roomName": room})
        ids = (
            {member["id"] for member in present["payload"]["present"]}
            if "payload" in present
            else {member["id"] for member in present["present"]}
        )
        assert doomed.isdisjoint(ids)
        assert len(ids) == len(clients) + 1
        assert len(deployment.gateways) == 2  # a replacement took the dead gateway's place
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("shard_hosts", [None, 1], ids=["host-per-pair", "one-host"])
async def test_room_shard_restart_keeps_membership_and_metadata(deploy: Any, shard_hosts: int | None) -> None:
    server, deployment = await deploy(gateways=1, shard_hosts=shard_hosts)
    assert len(deployment.shards) == (shard_hosts or 2)
    room = unique("restart")
    async with raw_client(url_of(server)) as a, raw_client(url_of(server)) as b:
        await a.call("mesh/join-room", {"roomName": room})
        await b.call("mesh/join-room", {"roomName": room})
        await server.room_manager.set_metadata(room, {"topic": "kept"})
        for kind in (ROOMS, CONNECTIONS):
            for index in range(deployment.shard_count(kind)):
                await deployment.kill_shard(kind, index)
        # Requests during the restart wait for the rebuilt shard or fail clearly; none hangs.
        outcome = await a.call("mesh/get-room-metadata", {"roomName": room}, timeout=30)
        if "code" in outcome:
            assert outcome["code"] == "EUNAVAILABLE"
            outcome = await a.call("mesh/get-room-metadata", {"roomName": room}, timeout=30)
        assert outcome == {"metadata": {"topic": "kept"}}
        assert sorted(await server.get_room_members(room)) == sorted([a.connection_id, b.connection_id])
        assert await b.call("mesh/get-connection-metadata", {"connectionId": a.connection_id}) == {
            "metadata": None
        }
        assert await server.broadcast_room(room, "after-restart", 1) == 2
        assert (await a.push("after-restart"))["payload"] == 1


def test_shards_are_dealt_to_hosts_in_order() -> None:
    from mesh_actors.runtime.ray import DeploymentSpec

    def spec(rooms: int, connections: int, hosts: int = 0) -> DeploymentSpec:
        settings = MeshSettings(
            room_shards=rooms, connection_shards=connections, redis_url="redis://x", key_prefix="p:"
        )
        return DeploymentSpec("d", "ns", b"t", KINDS, settings, shard_hosts=hosts)

    def names(spec: DeploymentSpec, host: int) -> list[str]:
        return [shard.name for shard in spec.hosted_by(host)]

    # Kinds are dealt in registration order (connections, then rooms), each kind by index.
    assert [kind.name for kind in KINDS] == ["connections", "rooms"]
    paired = spec(2, 2)
    assert paired.host_count == 2
    assert names(paired, 0) == ["d-connections-0", "d-rooms-0"]
    assert names(paired, 1) == ["d-connections-1", "d-rooms-1"]
    assert paired.host_of("d-connections-1") == "d-shards-1"
    assert paired.host_of("d-gw-1234") == "d-gw-1234"  # gateways host themselves

    uneven = spec(1, 3)
    assert uneven.host_count == 3
    hosted = [names(uneven, h) for h in range(3)]
    assert hosted == [["d-connections-0", "d-rooms-0"], ["d-connections-1"], ["d-connections-2"]]

    single = spec(2, 2, hosts=1)
    assert [shard.kind for shard in single.hosted_by(0)] == [CONNECTIONS, CONNECTIONS, ROOMS, ROOMS]
    assert {single.host_of(shard.name) for shard in single.shard_names()} == {"d-shards-0"}

    every = spec(2, 2, hosts=4)
    assert sorted(every.host_of(shard.name) for shard in every.shard_names()) == [
        f"d-shards-{h}" for h in range(4)
    ]
    assert every.overrides() == {"redis_url": "redis://x", "connection_shards": 2, "room_shards": 2}


async def test_more_shard_hosts_than_shards_is_refused() -> None:
    from mesh_actors.runtime.ray import RayDeployment

    with pytest.raises(ValueError, match="exceeds the 4 shards"):
        RayDeployment(MeshServer(), shard_hosts=5)


async def test_shard_counts_override_the_settings_by_kind_name() -> None:
    from mesh_actors.runtime.ray import RayDeployment

    server = MeshServer(room_shards=2, connection_shards=2)
    deployment = RayDeployment(server, shard_counts={"rooms": 3})
    assert (deployment.shard_count(ROOMS), deployment.shard_count(CONNECTIONS)) == (3, 2)
    assert server.settings.room_shards == 2  # the server's own app is left as it was
    with pytest.raises(ValueError, match="unknown owner kinds"):
        RayDeployment(server, shard_counts={"room": 3})


async def test_server_api_from_the_driver_reports_unknown_connections(shared_ray_server: MeshServer) -> None:
    with pytest.raises(CodeError) as caught:
        await shared_ray_server.add_to_room(unique("r"), "no-such-connection")
    assert caught.value.code == "ENOCONN"


async def test_a_failed_start_removes_every_actor(deploy: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # without SO_REUSEPORT: no gateway can share this port
        port = taken.getsockname()[1]
        from mesh_actors.runtime.ray import RayDeployment

        server = MeshServer(port=port, key_prefix=unique("failed") + ":")
        deployment = RayDeployment(server, gateways=1, host="127.0.0.1")
        with pytest.raises(OSError):
            await deployment.start()
    assert deployment.gateways == {} and deployment.shards == []
    assert server.local_gateway is None
    with pytest.raises(RuntimeError, match="not started"):
        server.runtime  # noqa: B018 - the server was never bound to the failed deployment


@pytest.mark.parametrize("colocate", [False, True], ids=["gateways", "node-hosts"])
async def test_draining_a_node_moves_its_gateways_elsewhere(deploy: Any, colocate: bool) -> None:
    import ray

    server, deployment = await deploy(watch_interval=NO_PROBES, colocate=colocate)
    room = unique("drain")
    async with AsyncExitStack() as stack:
        a, b = await clients_on_two_gateways(stack, server)
        await a.call("mesh/join-room", {"roomName": room})
        await b.call("mesh/join-room", {"roomName": room})
        located = await server.connection_manager.locate([b.connection_id])
        drained_gateway = located[b.connection_id]
        node = deployment.gateway_nodes[drained_gateway]

        # What a KubeRay worker's preStop hook runs, here against the test cluster.
        address = ray.get_runtime_context().gcs_address
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mesh_actors",
            "drain-node",
            "--address",
            address,
            "--node-id",
            node,
            "--deployment",
            deployment.spec.name,
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0
        assert output.decode().splitlines() == [
            f"drained {drained_gateway} (1 connection(s))",
            "1 gateway(s) drained",
        ]

        assert await b.closed(timeout=10) == 1001  # "going away": reconnect elsewhere
        gone, _ = await asyncio.wait_for(deployment.gateway_deaths.get(), 30)
        assert gone == drained_gateway
        assert node in deployment.draining_nodes
        assert len(deployment.gateways) == 2
        assert node not in deployment.gateway_nodes.values()  # the replacement went to another node
        members = set(await server.get_room_members(room))
        assert b.connection_id not in members and a.connection_id in members
        # A new client lands on a live gateway and can join.
        c = await stack.enter_async_context(raw_client(url_of(server)))
        assert (await c.call("mesh/join-room", {"roomName": room}))["success"] is True


async def test_colocated_shards_serve_and_come_back_after_a_crash(deploy: Any) -> None:
    server, deployment = await deploy(colocate=True, watch_interval=NO_PROBES)
    assert deployment.shards == [] and len(deployment.gateways) == 2  # two processes in all
    room = unique("colocated")
    url = url_of(server)
    async with AsyncExitStack() as stack:
        a, b = await clients_on_two_gateways(stack, server)
        await a.call("mesh/join-room", {"roomName": room})
        await b.call("mesh/join-room", {"roomName": room})
        await server.room_manager.set_metadata(room, {"topic": "kept"})
        assert await b.call("broadcast-room", {"roomName": room, "command": "news", "payload": 1})
        assert (await a.push("news"))["payload"] == 1
        assert (await b.push("news"))["payload"] == 1

    clients = [MeshClient(url, reconnect_initial_delay=0.05, reconnect_max_delay=0.3) for _ in range(6)]
    try:
        for client in clients:
            await asyncio.wait_for(client.connect(), 10)
            await client.join_room(room)
        located = await server.connection_manager.locate([c.connection_id for c in clients])
        victim = located[clients[0].connection_id]
        doomed = {cid for cid, gid in located.items() if gid == victim}
        reconnected = [asyncio.get_running_loop().create_future() for _ in doomed]
        by_id = {c.connection_id: c for c in clients}
        for future, cid in zip(reconnected, sorted(doomed), strict=True):
            by_id[cid].on("reconnect", lambda _id, f=future: f.done() or f.set_result(_id))

        killed_at = time.monotonic()
        await deployment.kill_gateway(victim)  # the process dies; Ray restarts it
        gone, dropped = await asyncio.wait_for(deployment.gateway_deaths.get(), 30)
        elapsed = time.monotonic() - killed_at
        print(f"node host back and the dead gateway's connections dropped {elapsed:.2f}s after the kill")
        assert gone == victim and dropped == len(doomed)
        assert len(deployment.gateways) == 2 and victim not in deployment.gateways
        # The new incarnation runs the same host (same Ray actor name), with a new gateway id.
        assert {deployment.spec.host_of(gid) for gid in deployment.gateways} == {
            deployment.spec.shard_host_name(0),
            deployment.spec.shard_host_name(1),
        }

        new_ids = await asyncio.wait_for(asyncio.gather(*reconnected), 30)
        members = set(await server.get_room_members(room))
        assert doomed.isdisjoint(members)  # no ghosts
        assert set(new_ids) <= members
        assert await server.room_manager.get_metadata(room) == {"topic": "kept"}
        assert await server.broadcast_room(room, "after", 2) == len(members)
    finally:
        for client in clients:
            await client.close()
