"""Tests of the asyncio client (mesh_actors.client)."""
