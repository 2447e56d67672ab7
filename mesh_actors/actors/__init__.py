"""Contracts between actors: refs, the directory, the owner-kind registry, sharding. No I/O."""
