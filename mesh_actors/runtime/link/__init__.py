"""The data plane of the multi-process runtimes: actor-to-actor calls over direct TCP links.

- :mod:`.codec`: link messages on the wire (length-prefixed, pickled after a raw opening);
- :mod:`.server`: :class:`LinkServer`, which runs the methods links name on local actors;
- :mod:`.client`: :class:`Link`, an actor ref to a remote actor;
- :mod:`.directory`: :class:`LinkDirectory`, the refs to every actor of a deployment.

The control plane (Ray) only tells a link where its actor is (a :data:`Resolver`).
"""

from __future__ import annotations

from .client import Link, LinkGoneError, Resolver
from .directory import LinkDirectory
from .server import LinkServer

__all__ = ["Link", "LinkDirectory", "LinkGoneError", "LinkServer", "Resolver"]
