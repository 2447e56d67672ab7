"""The data-plane link over real loopback TCP: calls, tells, errors, auth, reconnection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mesh_actors import CodeError
from mesh_actors.actors.ref import retry_safe
from mesh_actors.runtime.link import Link, LinkGoneError, LinkServer, Resolver

TOKEN = b"test-token"


class Target:
    def __init__(self) -> None:
        self.told: list[Any] = []
        self.release = asyncio.Event()

    def add(self, a: int, b: int) -> int:
        return a + b

    async def slow_echo(self, value: Any) -> Any:
        await self.release.wait()
        return value

    @retry_safe
    async def slow_read(self, value: Any) -> Any:
        await self.release.wait()
        return value

    def scaled(self, value: int, *, factor: int = 1) -> int:
        return value * factor

    def note_scaled(self, value: int, *, factor: int = 1) -> None:
        self.told.append(value * factor)

    def note(self, value: Any) -> None:
        self.told.append(value)

    async def fail_with_code(self) -> None:
        raise CodeError("nope", "EFORBIDDEN", "AuthError")

    def fail_plain(self) -> None:
        raise KeyError("k")

    def _private(self) -> str:
        return "secret"


class Stranger:
    """A class whose method names the target does not have."""

    def no_such_method(self) -> None:
        raise AssertionError("never runs here")


def at(address: tuple[str, int]) -> Resolver:
    """A resolver that always answers ``address`` (the actor never moves)."""

    async def resolve() -> tuple[str, int]:
        return address

    return resolve


async def serve(target: Any, token: bytes = TOKEN) -> tuple[LinkServer, tuple[str, int]]:
    server = LinkServer(target, token, name="target")
    return server, await server.start("127.0.0.1")


async def test_calls_and_results() -> None:
    server, address = await serve(Target())

    link = Link("target", at(address), TOKEN)
    try:
        assert await link.call(Target.add, 2, 3) == 5
        results = await asyncio.gather(*(link.call(Target.add, i, i) for i in range(500)))
        assert results == [2 * i for i in range(500)]
        server.target.release.set()
        assert await link.call(Target.slow_echo, (b"bytes", ("a", 1))) == (b"bytes", ("a", 1))
    finally:
        await link.close()
        await server.close()


async def test_errors_cross_the_link_with_their_code() -> None:
    server, address = await serve(Target())

    link = Link("target", at(address), TOKEN)
    try:
        with pytest.raises(CodeError) as coded:
            await link.call(Target.fail_with_code)
        assert (coded.value.code, coded.value.name, coded.value.message) == (
            "EFORBIDDEN",
            "AuthError",
            "nope",
        )
        with pytest.raises(CodeError) as plain:
            await link.call(Target.fail_plain)
        assert (plain.value.code, plain.value.name) == ("ESERVER", "KeyError")
        with pytest.raises(CodeError) as private:
            await link.call(Target._private)
        assert private.value.code == "EINVALID"
        with pytest.raises(CodeError):
            await link.call(Stranger.no_such_method)
        assert await link.call(Target.add, 1, 1) == 2  # the link survives all of it
    finally:
        await link.close()
        await server.close()


async def test_keyword_arguments_cross_the_link() -> None:
    target = Target()
    server, address = await serve(target)

    link = Link("target", at(address), TOKEN)
    try:
        assert await link.call(Target.scaled, 2, factor=3) == 6
        assert await link.call(Target.scaled, 2) == 2  # no keywords: the short message
        link.tell(Target.note_scaled, 5, factor=2)
        link.tell(Target.note_scaled, 5)
        await link.call(Target.add, 0, 0)
        assert target.told == [10, 5]
    finally:
        await link.close()
        await server.close()


async def test_tells_arrive_in_order() -> None:
    target = Target()
    server, address = await serve(target)

    link = Link("target", at(address), TOKEN)
    try:
        for i in range(5000):
            link.tell(Target.note, i)
        assert await link.call(Target.add, 0, 0) == 0  # a call after the tells: they were all handled
        assert target.told == list(range(5000))
    finally:
        await link.close()
        await server.close()


async def test_reconnects_to_a_restarted_actor_at_a_new_address() -> None:
    target = Target()
    server, address = await serve(target)
    current = {"address": address}

    async def resolve() -> tuple[str, int]:
        return current["address"]

    link = Link("target", resolve, TOKEN, reconnect_window=5)
    try:
        assert await link.call(Target.add, 1, 2) == 3
        pending = asyncio.ensure_future(link.call(Target.slow_echo, "in flight"))
        await asyncio.sleep(0)  # let it be written
        await link.call(Target.add, 0, 0)  # the slow call is now on the server
        await server.close()  # the actor dies with a call in flight
        with pytest.raises(CodeError) as lost:
            await pending
        assert lost.value.code == "EUNAVAILABLE"
        restarted = Target()
        server, current["address"] = await serve(restarted)
        assert await link.call(Target.add, 20, 22) == 42  # queued, resolved again, reconnected
        link.tell(Target.note, "after restart")
        await link.call(Target.add, 0, 0)
        assert restarted.told == ["after restart"]
    finally:
        await link.close()
        await server.close()


async def test_a_retry_safe_call_in_flight_is_sent_again_after_a_restart() -> None:
    server, address = await serve(Target())
    current = {"address": address}

    async def resolve() -> tuple[str, int]:
        return current["address"]

    link = Link("target", resolve, TOKEN, reconnect_window=5)
    try:
        pending = asyncio.ensure_future(link.call(Target.slow_read, "read"))
        await asyncio.sleep(0)
        await link.call(Target.add, 0, 0)  # the read is now on the server
        await server.close()  # the actor dies with it in flight
        restarted = Target()
        restarted.release.set()
        server, current["address"] = await serve(restarted)
        assert await pending == "read"  # marked retry_safe: run again, not EUNAVAILABLE
    finally:
        await link.close()
        await server.close()


async def test_wrong_token_is_refused() -> None:
    server, address = await serve(Target())

    async def resolve() -> tuple[str, int]:
        return address

    link = Link("target", resolve, b"wrong", reconnect_window=0.5, call_timeout=5)
    try:
        with pytest.raises(CodeError) as refused:
            await link.call(Target.add, 1, 1)
        assert refused.value.code == "EUNAVAILABLE"
    finally:
        await link.close()
        await server.close()


async def test_gone_actor_fails_fast() -> None:
    async def resolve() -> tuple[str, int]:
        raise LinkGoneError("actor was removed")

    link = Link("ghost", resolve, TOKEN)
    with pytest.raises(CodeError) as gone:
        await link.call(Target.add, 1, 1)
    assert gone.value.code == "EUNAVAILABLE" and "actor was removed" in gone.value.message
    link.tell(Target.note, 1)  # dropped, never raises
    await link.close()


async def test_call_timeout() -> None:
    server, address = await serve(Target())

    link = Link("target", at(address), TOKEN, call_timeout=0.2)
    try:
        with pytest.raises(CodeError) as timed_out:
            await link.call(Target.slow_echo, 1)
        assert timed_out.value.code == "ETIMEOUT"
    finally:
        await link.close()
        await server.close()


async def test_one_server_hosts_several_actors_by_name() -> None:
    first, second = Target(), Target()
    server = LinkServer({"shard-a": first, "shard-b": second}, TOKEN, name="host")
    address = await server.start("127.0.0.1")

    async def resolve() -> tuple[str, int]:
        return address

    to_a = Link("shard-a", resolve, TOKEN)
    to_b = Link("shard-b", resolve, TOKEN)
    stranger = Link("shard-c", resolve, TOKEN, reconnect_window=0.5, call_timeout=5)
    try:
        to_a.tell(Target.note, "for a")
        to_b.tell(Target.note, "for b")
        assert await to_a.call(Target.add, 1, 2) == 3
        assert await to_b.call(Target.add, 2, 2) == 4
        assert (first.told, second.told) == (["for a"], ["for b"])
        with pytest.raises(CodeError) as refused:  # this process hosts no actor of that name
            await stranger.call(Target.add, 1, 1)
        assert refused.value.code == "EUNAVAILABLE"
        assert await to_a.call(Target.add, 0, 1) == 1  # the refusal touched no other link
    finally:
        for link in (to_a, to_b, stranger):
            await link.close()
        await server.close()
