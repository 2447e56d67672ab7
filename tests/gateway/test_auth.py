"""Authentication at the upgrade (docs/protocol.md#authentication) and the server-only auth slot.

See docs/security.md#auth-data-clients-cannot-overwrite.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from mesh_actors import AuthenticationError, MeshServer, UpgradeRequest
from tests.conftest import ServerFactory, url_of
from tests.wire import raw_client


def whoami(server: MeshServer) -> None:
    @server.command("whoami")
    async def handler(ctx: Any) -> dict[str, Any]:
        return {
            "metadata": await ctx.server.connection_manager.get_metadata(ctx.connection),
            "auth": ctx.connection.auth,
            "stored_auth": await ctx.server.connection_manager.get_auth(ctx.connection.id),
        }


async def test_accepted_auth_data_becomes_metadata_and_auth(make_server: ServerFactory) -> None:
    seen: list[UpgradeRequest] = []

    async def authenticate(request: UpgradeRequest) -> dict[str, Any]:
        seen.append(request)
        return {"userId": 123, "role": "admin", "token": request.query.get("token")}

    server = await make_server(setup=whoami, authenticate_connection=authenticate)
    async with raw_client(url_of(server) + "/socket?token=t0k", additional_headers={"X-Test": "yes"}) as c:
        expected = {"userId": 123, "role": "admin", "token": "t0k"}
        assert await c.call("whoami") == {"metadata": expected, "auth": expected, "stored_auth": expected}
        assert len(server.connection_manager.get_local_connections()) == 1
    request = seen[0]
    assert request.path == "/socket"
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert request.headers["x-test"] == "yes"
    assert request.remote_address[0] == "127.0.0.1"


async def test_clients_cannot_overwrite_auth_data(make_any_server: ServerFactory) -> None:
    server = await make_any_server(setup=whoami, authenticate_connection=lambda request: {"role": "guest"})
    async with raw_client(url_of(server)) as c:
        assert await c.call("mesh/set-my-connection-metadata", {"metadata": {"role": "admin"}}) == {
            "success": True
        }
        result = await c.call("whoami")
    # Client-visible metadata changed, the server-only auth slot did not: guards read the latter.
    assert result == {
        "metadata": {"role": "admin"},
        "auth": {"role": "guest"},
        "stored_auth": {"role": "guest"},
    }


async def test_falsy_auth_data_accepts_without_metadata(make_server: ServerFactory) -> None:
    server = await make_server(setup=whoami, authenticate_connection=lambda request: {})
    async with raw_client(url_of(server)) as c:
        assert await c.call("whoami") == {"metadata": None, "auth": {}, "stored_auth": {}}


def _reject_none(request: UpgradeRequest) -> None:
    return None


def _reject_403(request: UpgradeRequest) -> None:
    raise AuthenticationError(403, "Forbidden")


def _reject_internal(request: UpgradeRequest) -> None:
    raise RuntimeError("database password is hunter2")


async def _reject_async(request: UpgradeRequest) -> None:
    raise AuthenticationError(401, "Invalid token")


@pytest.mark.parametrize(
    ("authenticate", "status", "body"),
    [
        (_reject_none, 401, "Unauthorized"),
        (_reject_403, 403, "Forbidden"),
        (_reject_internal, 401, "Unauthorized"),  # internal error text never reaches the client
        (_reject_async, 401, "Invalid token"),
    ],
)
async def test_rejected_upgrades(
    make_server: ServerFactory, authenticate: Any, status: int, body: str
) -> None:
    server = await make_server(authenticate_connection=authenticate)
    with pytest.raises(InvalidStatus) as caught:
        async with raw_client(url_of(server)):
            pass
    response = caught.value.response
    assert response.status_code == status
    assert response.body.decode().strip() == body
    assert await server.total_connection_count() == 0


def test_authentication_error_rejects_non_error_status() -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        AuthenticationError(200, "ok")


async def test_without_authenticator_anyone_connects(make_server: ServerFactory) -> None:
    server = await make_server(setup=whoami)
    async with raw_client(url_of(server)) as c:
        assert await c.call("whoami") == {"metadata": None, "auth": None, "stored_auth": None}


async def test_readme_authentication_example(make_any_server: ServerFactory) -> None:
    # The README's example, verbatim in behaviour: query token, bearer header, 403 and 401.
    tokens = {"s3cret": {"userId": 1, "role": "admin"}}

    async def authenticate(request: UpgradeRequest) -> Any:
        token = request.query.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if token == "banned":
            raise AuthenticationError(403, "Forbidden")
        return tokens.get(token)

    def setup(server: MeshServer) -> None:
        server.expose_command("whoami", lambda ctx: ctx.connection.auth)

    server = await make_any_server(setup=setup, authenticate_connection=authenticate)
    async with raw_client(url_of(server) + "/?token=s3cret") as by_query:
        assert await by_query.call("whoami") == {"userId": 1, "role": "admin"}
    async with raw_client(url_of(server), additional_headers={"Authorization": "Bearer s3cret"}) as by_header:
        assert await by_header.call("whoami") == {"userId": 1, "role": "admin"}
    for query, status in (("?token=banned", 403), ("?token=wrong", 401), ("", 401)):
        with pytest.raises(InvalidStatus) as caught:
            async with raw_client(url_of(server) + "/" + query):
                pass
        assert caught.value.response.status_code == status
