"""Server options, read from keyword arguments, then ``MESH_*`` environment variables, then defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MeshSettings"]


class MeshSettings(BaseSettings):
    """Every tunable of a Mesh server, with its documented default.

    Times are in seconds. Example: ``MESH_PING_INTERVAL=10 mesh-actors serve app:server``.
    """

    model_config = SettingsConfigDict(env_prefix="MESH_", extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    """Interface the gateway listens on."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port of the gateway (WebSocket and ``GET /healthz``); 0 picks a free port."""
    redis_url: str | None = None
    """Redis to use, e.g. ``redis://127.0.0.1:6379/0``; unset or empty starts an embedded
    redis-server."""
    key_prefix: str = Field(default="mesh:", min_length=1)
    """Prefix of every Redis key the server writes."""
    redis_timeout: float = Field(default=5.0, gt=0)
    """Seconds before a Redis connect or command counts as failed."""
    persist_timeout: float = Field(default=5.0, gt=0)
    """Seconds a command waits for its change to reach Redis before answering ``EUNAVAILABLE``
    (the change is kept in memory and written when Redis is back)."""

    ping_interval: float = Field(default=30.0, gt=0)
    """Seconds between ``ping`` pushes (reference: 30 s)."""
    max_missed_pongs: int = Field(default=1, ge=0)
    """Unanswered pings tolerated before the connection is closed (reference: 1)."""
    latency_interval: float = Field(default=5.0, gt=0)
    """Seconds between latency probes (reference: 5 s)."""

    max_frame_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest inbound message; a bigger one closes the connection with code 1009 (default 1 MiB)."""
    max_send_buffer_bytes: int = Field(default=4 << 20, ge=1024)
    """Outbound bytes queued for a socket before it counts as a slow consumer and is closed with
    code 1013 (default 4 MiB). Past half of it the gateway starts no more commands of that
    connection and stops reading its socket until the output drains."""
    max_inflight_commands: int = Field(default=128, ge=1)
    """Commands of one connection running at once; more stop the reading of its socket."""
    compression: bool = False
    """Offer permessage-deflate. Off by default: it costs CPU and ~50 KiB per connection."""
    accept_backlog: int = Field(default=2048, ge=1)
    """Pending TCP connections the kernel queues for the gateway (a reconnect storm after a
    gateway dies arrives at once; asyncio's default of 100 would drop some)."""
    close_timeout: float = Field(default=2.0, gt=0)
    """Seconds to wait for a closing handshake before dropping the TCP connection."""

    room_shards: int = Field(default=2, ge=1, le=1024)
    """Number of RoomShard actors (room name hash)."""
    connection_shards: int = Field(default=2, ge=1, le=1024)
    """Number of ConnectionShard actors (connection id hash)."""
    shard_hosts: int | None = Field(default=None, ge=1, le=2048)
    """Ray runtime: processes (Ray actors) hosting the shards. Default: one per room/connection
    shard pair, ``max(room_shards, connection_shards)``. Each Ray worker process costs about half a
    percent of a core at rest, so fewer hosts suit small nodes; more spread the shards' work."""
    colocate: bool = False
    """Ray runtime: run the shards inside the gateways' processes (one ``NodeHost`` per gateway)
    instead of separate shard processes. A broadcast to a room owned there is then a local call,
    as inline, and a one-gateway node runs one Ray worker instead of two; a crash of that process
    takes its shards down with the gateway until Ray restarts it (about a second)."""

    client_metadata_writes: bool = True
    """Allow ``set-my-connection-metadata`` (the stock clients' ``setConnectionMetadata``)."""
    connection_metadata_read: Literal["any", "room-peers", "self"] = "any"
    """Whose metadata ``get-connection-metadata`` may read: any connection (reference), connections
    sharing a room with the caller, or only the caller's own."""
    rooms_require_guard: bool = False
    """If true, a room that matches no ``guard_room`` pattern cannot be joined from a client."""

    def updated(self, **changes: Any) -> MeshSettings:
        """A copy with ``changes`` applied, validated like the constructor's options."""
        return MeshSettings(**{**self.model_dump(), **changes})

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_redis_url_means_embedded(cls, value: object) -> object:
        # ``MESH_REDIS_URL=`` (set but empty) is how shells and env files spell "unset".
        return None if isinstance(value, str) and not value.strip() else value
