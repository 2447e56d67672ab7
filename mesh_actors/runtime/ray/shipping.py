"""Shipping the app to the gateway processes: the :class:`~mesh_actors.app.App` value, pickled.

Modules that are not installed packages (the app file itself) are pickled by value, so the app
file need not exist on the worker nodes; its third-party imports must be installed there.
"""

from __future__ import annotations

import site
import sys
from types import ModuleType

from ray import cloudpickle

from ...app import App

__all__ = ["pickle_app", "unpickle_app"]


def _user_modules(app: App) -> set[ModuleType]:
    """Modules of the app's callables that workers may not be able to import (not installed)."""
    installed = (*site.getsitepackages(), site.getusersitepackages(), sys.base_prefix)
    modules = set()
    for function in app.user_callables():
        name = getattr(function, "__module__", None)
        module = sys.modules.get(name) if name else None
        if module is None or name is None or name.startswith("mesh_actors"):
            continue
        path = getattr(module, "__file__", None) or ""
        if name == "__main__" or not path.startswith(installed):
            modules.add(module)
    return modules


def pickle_app(app: App) -> bytes:
    """The app (commands, middleware, hooks, guards, authenticator, settings) as bytes."""
    modules = _user_modules(app)
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(app))
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)


def unpickle_app(data: bytes) -> App:
    """The app that :func:`pickle_app` shipped."""
    app = cloudpickle.loads(data)
    if not isinstance(app, App):
        raise TypeError(f"expected a pickled App, got {type(app).__name__}")
    return app
