"""Runtimes: where the gateways and the owner actors run, and how they reach each other.

- :mod:`.inline`: everything in one asyncio process, refs are direct calls (the default);
- :mod:`.link`: the data plane of the multi-process runtimes (actor calls over TCP);
- :mod:`.ray`: placement, restarts and supervision on a Ray cluster (imports Ray: optional).

Every runtime is generic over the registered owner kinds (``App.kinds``).
"""
