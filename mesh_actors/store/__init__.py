"""Storage plumbing under the owners' storage ports: today Redis (``store.redis``)."""
