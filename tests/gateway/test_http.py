"""Plain HTTP on the gateway port: health and readiness probes."""

from __future__ import annotations

import asyncio

from tests.conftest import ServerFactory


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_healthz_and_readyz(make_server: ServerFactory) -> None:
    server = await make_server()
    assert await http_get(server.port, "/healthz") == (200, "ok\n")
    assert await http_get(server.port, "/readyz") == (200, "ready\n")


async def test_plain_get_elsewhere_asks_for_an_upgrade(make_server: ServerFactory) -> None:
    server = await make_server()
    status, _ = await http_get(server.port, "/")
    assert status == 426
