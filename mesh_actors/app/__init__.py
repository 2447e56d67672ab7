"""The user's app as a value (:class:`App`) and the server API over a runtime (:class:`Api`)."""

from __future__ import annotations

from .api import Api, LocalGateway, Runtime
from .app import App
from .auth import AuthenticationError, Authenticator, UpgradeRequest
from .context import Context

__all__ = [
    "Api",
    "App",
    "AuthenticationError",
    "Authenticator",
    "Context",
    "LocalGateway",
    "Runtime",
    "UpgradeRequest",
]
