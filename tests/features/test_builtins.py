"""Every built-in command of the foundation slice, frame by frame, in both dialects.

See docs/protocol.md#built-in-commands.
"""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory, expose_test_commands, unique, url_of
from tests.wire import raw_client

PREFIXES = ["mesh/", "rt/"]


@pytest.fixture
async def url(make_any_server: ServerFactory) -> str:
    return url_of(await make_any_server(setup=expose_test_commands))


@pytest.fixture
def room() -> str:
    """A room name of this test alone (the Ray deployment is shared between tests)."""
    return unique("room")


async def test_connect_sends_both_assign_id_frames_first(url: str) -> None:
    async with raw_client(url, wait_ready=False) as client:
        first = await client.wait_for(lambda f: True)
        second = await client.wait_for(lambda f: True)
    assert first["command"] == "mesh/assign-id"
    assert second == {"command": "rt/assign-id", "payload": first["payload"]}
    assert set(first) == {"command", "payload"}  # a push: no id
    assert isinstance(first["payload"], str) and len(first["payload"]) == 36


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_noop_answers_true_and_echoes_command_and_id(url: str, prefix: str) -> None:
    async with raw_client(url) as client:
        response = await client.request(prefix + "noop", {}, request_id=41)
    assert response == {"id": 41, "command": prefix + "noop", "payload": True}


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_join_room_returns_members_with_metadata(url: str, room: str, prefix: str) -> None:
    async with raw_client(url) as a, raw_client(url) as b:
        assert await a.call(prefix + "set-my-connection-metadata", {"metadata": {"name": "a"}}) == {
            "success": True
        }
        assert await a.call(prefix + "join-room", {"roomName": room}) == {
            "success": True,
            "present": [{"id": a.connection_id, "metadata": {"name": "a"}}],
        }
        joined = await b.request(prefix + "join-room", {"roomName": room})
    assert joined["command"] == prefix + "join-room"
    assert joined["payload"] == {
        "success": True,
        "present": [
            {"id": a.connection_id, "metadata": {"name": "a"}},
            {"id": b.connection_id, "metadata": None},
        ],
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_join_room_twice_is_idempotent(url: str, room: str, prefix: str) -> None:
    async with raw_client(url) as a:
        await a.call(prefix + "join-room", {"roomName": room})
        again = await a.call(prefix + "join-room", {"roomName": room})
    assert again == {"success": True, "present": [{"id": a.connection_id, "metadata": None}]}


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_leave_room(url: str, room: str, prefix: str) -> None:
    async with raw_client(url) as a, raw_client(url) as b:
        await a.call(prefix + "join-room", {"roomName": room})
        await b.call(prefix + "join-room", {"roomName": room})
        assert await a.call(prefix + "leave-room", {"roomName": room}) == {"success": True}
        rejoined = await b.call(prefix + "join-room", {"roomName": room})
    assert rejoined["present"] == [{"id": b.connection_id, "metadata": None}]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_get_connection_metadata_of_another_connection(url: str, prefix: str) -> None:
    async with raw_client(url) as a, raw_client(url) as b:
        await a.call(prefix + "set-my-connection-metadata", {"metadata": {"role": "x"}})
        assert await b.call(prefix + "get-connection-metadata", {"connectionId": a.connection_id}) == {
            "metadata": {"role": "x"}
        }
        assert await b.call(prefix + "get-connection-metadata", {"connectionId": "nobody"}) == {
            "metadata": None
        }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_get_my_connection_metadata_defaults_to_null(url: str, prefix: str) -> None:
    async with raw_client(url) as a:
        assert await a.call(prefix + "get-my-connection-metadata", {}) == {"metadata": None}


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("initial", "update", "strategy", "expected"),
    [
        ({"a": 1}, {"b": 2}, None, {"b": 2}),
        ({"a": 1}, {"b": 2}, "replace", {"b": 2}),
        (
            {"user": "u", "status": "online", "preferences": {"theme": "dark", "lang": "en"}},
            {"status": "away", "role": "admin"},
            "merge",
            {"user": "u", "status": "away", "role": "admin", "preferences": {"theme": "dark", "lang": "en"}},
        ),
        (
            {"preferences": {"theme": "dark", "lang": "en", "notifications": {"email": True}}},
            {"preferences": {"theme": "light", "notifications": {"push": False}}},
            "deepMerge",
            {
                "preferences": {
                    "theme": "light",
                    "lang": "en",
                    "notifications": {"email": True, "push": False},
                }
            },
        ),
        ("initial-string", {"user": "test-user"}, "merge", {"user": "test-user"}),
        ({"a": 1}, None, "replace", None),
        ({"a": 1}, {}, "replace", {}),
        ({"a": [1, 2]}, {"a": [3]}, "deepMerge", {"a": [3]}),
    ],
)
async def test_set_my_connection_metadata_strategies(
    url: str, prefix: str, initial: object, update: object, strategy: str | None, expected: object
) -> None:
    async with raw_client(url) as a:
        assert await a.call(prefix + "set-my-connection-metadata", {"metadata": initial}) == {"success": True}
        payload: dict[str, object] = {"metadata": update}
        if strategy is not None:
            payload["options"] = {"strategy": strategy}
        assert await a.call(prefix + "set-my-connection-metadata", payload) == {"success": True}
        assert await a.call(prefix + "get-my-connection-metadata", {}) == {"metadata": expected}


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_get_room_metadata(url: str, room: str, prefix: str) -> None:
    async with raw_client(url) as a:
        assert await a.call(prefix + "get-room-metadata", {"roomName": room + "-empty"}) == {"metadata": None}
        assert await a.call(
            "set-room-meta", {"roomName": room, "metadata": {"key": "value", "nested": {"d": True}}}
        )
        assert await a.call(prefix + "get-room-metadata", {"roomName": room}) == {
            "metadata": {"key": "value", "nested": {"d": True}}
        }


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("command", "payload", "details"),
    [
        ("join-room", {}, "roomName: Field required"),
        ("join-room", {"roomName": 5}, "roomName: Input should be a valid string"),
        ("join-room", {"roomName": ""}, "roomName: String should have at least 1 character"),
        ("leave-room", [], "payload must be a JSON object, not an array"),
        ("get-connection-metadata", {"connectionId": None}, "connectionId: Input should be a valid string"),
        ("get-room-metadata", "lobby", "payload must be a JSON object, not a string"),
        (
            "set-my-connection-metadata",
            {"metadata": 1, "options": {"strategy": "bogus"}},
            "options.strategy: Input should be 'replace', 'merge' or 'deepMerge'",
        ),
    ],
)
async def test_invalid_builtin_payloads_get_einvalid(
    url: str, prefix: str, command: str, payload: object, details: str
) -> None:
    async with raw_client(url) as a:
        response = await a.request(prefix + command, payload)
        assert response["payload"] == {
            "error": f'Invalid payload for "{prefix + command}": {details}',
            "code": "EINVALID",
            "name": "ValidationError",
        }
        assert await a.call(prefix + "noop") is True  # the connection keeps working
