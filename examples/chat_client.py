"""Talk to the chat example with the Python client.

mesh-actors serve examples/chat.py:server          # in one terminal
python examples/chat_client.py [ws://127.0.0.1:8080] [name]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from mesh_actors.client import MeshClient


async def main(url: str, name: str) -> None:
    async with MeshClient(url) as client:
        print(f"connected as {client.connection_id}")
        heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        client.on("chat-message", heard.put_nowait)

        print("echo:", await client.command("echo", {"hello": "world"}))
        await client.set_connection_metadata({"name": name})
        print("status:", await client.command("set-status", {"status": "chatting"}))
        joined = await client.join_room("lobby")
        print(f"joined lobby with {len(joined['present'])} member(s)")
        print("topic:", await client.command("update-room-topic", {"roomName": "lobby", "topic": "python"}))
        print("room metadata:", await client.get_room_metadata("lobby"))

        await client.command("say", {"roomName": "lobby", "text": f"hello from {name}"})
        message = await asyncio.wait_for(heard.get(), timeout=5)
        print(f"{message['name']}: {message['text']}")
        await client.leave_room("lobby")


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080",
            sys.argv[2] if len(sys.argv) > 2 else "ada",
        )
    )
