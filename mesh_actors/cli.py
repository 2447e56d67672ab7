"""The ``mesh-actors`` command line: ``serve`` an app, ``bench`` it, print the ``version``."""

from __future__ import annotations

import errno
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from . import __version__
from .server.mesh_server import MeshServer

__all__ = ["AppLoadError", "load_app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Mesh realtime server on actors.")


class AppLoadError(Exception):
    """``MODULE:ATTR`` did not lead to a MeshServer; the message says what to fix."""


def load_app(target: str) -> MeshServer:
    """Import ``MODULE:ATTR`` (a file path or a dotted module) and return the MeshServer there."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise AppLoadError(f"expected MODULE:ATTR, e.g. examples/chat.py:server, not {target!r}")
    if module_part.endswith(".py") or "/" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise AppLoadError(f"no such file: {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise AppLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise AppLoadError(f"importing {path} failed: {type(error).__name__}: {error}") from error
    else:
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as error:
            raise AppLoadError(f"cannot import module {module_part!r}: {error}") from error
        except Exception as error:
            raise AppLoadError(f"importing {module_part} failed: {type(error).__name__}: {error}") from error
    server = getattr(module, attr, None)
    if server is None:
        raise AppLoadError(f"{module_part} has no attribute {attr!r}")
    if not isinstance(server, MeshServer):
        raise AppLoadError(f"{target} is a {type(server).__name__}, not a MeshServer")
    return server


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def serve(
    target: Annotated[str, typer.Argument(metavar="MODULE:ATTR", help="e.g. examples/chat.py:server")],
    host: Annotated[str | None, typer.Option(help="Interface to bind [default: settings, 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: settings, 8080]")] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis URL; omitted and MESH_REDIS_URL unset: embedded Redis")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    runtime: Annotated[str, typer.Option(help="inline (one process) or ray (a Ray cluster)")] = "inline",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster: auto, ray://host:10001 [default: start a local Ray]")
    ] = None,
    gateways: Annotated[int | None, typer.Option(help="Gateway actors (ray) [default: 2]")] = None,
    room_shards: Annotated[int | None, typer.Option(help="RoomShard actors [default: settings, 2]")] = None,
    connection_shards: Annotated[
        int | None, typer.Option(help="ConnectionShard actors [default: settings, 2]")
    ] = None,
    shard_hosts: Annotated[
        int | None,
        typer.Option(help="Ray processes hosting the shards (ray) [default: one per room/connection pair]"),
    ] = None,
    colocate: Annotated[
        bool | None,
        typer.Option("--colocate/--no-colocate", help="run the shards inside the gateways' processes (ray)"),
    ] = None,
) -> None:
    """Serve a MeshServer defined in MODULE:ATTR (inline by default, or on Ray)."""
    if runtime not in ("inline", "ray"):
        _fail(f"--runtime must be 'inline' or 'ray', not {runtime!r}", 2)
    if runtime == "inline" and (
        address is not None or gateways is not None or shard_hosts is not None or colocate is not None
    ):
        _fail("--address, --gateways, --shard-hosts and --colocate need --runtime ray", 2)
    if runtime == "ray" and importlib.util.find_spec("ray") is None:
        _fail("--runtime ray needs Ray: pip install 'mesh-actors[ray]'", 2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.lower() != "debug":
        # websockets logs every connection and HTTP probe at INFO: too chatty for a server log.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        server = load_app(target)
    except AppLoadError as error:
        _fail(str(error), 2)
        return
    given = {
        "host": host,
        "port": port,
        "redis_url": redis_url,
        "room_shards": room_shards,
        "connection_shards": connection_shards,
        "shard_hosts": shard_hosts,
        "colocate": colocate,
    }
    overrides: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if overrides:
        try:
            server.settings = server.settings.updated(**overrides)
        except ValidationError as error:
            _fail(f"invalid option: {error.errors(include_url=False)[0]['msg']}", 2)

    settings = server.settings
    shards = sum(kind.shard_count(settings) for kind in server.app.kinds)
    if settings.shard_hosts is not None and settings.shard_hosts > shards:
        _fail(f"--shard-hosts {settings.shard_hosts} is more than the {shards} shards there are to host", 2)
    if settings.colocate and settings.shard_hosts not in (None, gateways or 2):
        _fail("--colocate runs the shards in the gateways: give --gateways, not --shard-hosts", 2)

    def ready(running: MeshServer) -> None:
        redis = running.settings.redis_url or "embedded"
        where = f"redis: {redis}"
        if runtime == "ray":
            where = f"runtime: ray, {gateways or 2} gateways, {where}"
        typer.echo(f"mesh-actors listening on ws://{running.settings.host}:{running.port} ({where})")

    ray_options: dict[str, Any] = {}
    if runtime == "ray":
        ray_options = {"address": address, "gateways": gateways or 2}
    try:
        server.serve(runtime=runtime, on_ready=ready, **ray_options)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            _fail(
                f"port {server.settings.port} on {server.settings.host} is already in use; "
                "choose another with --port (or MESH_PORT)"
            )
        _fail(f"cannot listen on {server.settings.host}:{server.settings.port}: {error.strerror or error}")
    except Exception as error:
        from .runtime.inline import RedisUnavailableError
        from .store.redis import EmbeddedRedisError

        if isinstance(error, (RedisUnavailableError, EmbeddedRedisError)):
            _fail(str(error))
        raise


def _items(values: list[str] | None) -> list[str] | None:
    """Repeatable options that also take comma lists: ``--x a --x b,c`` -> ``[a, b, c]``."""
    if values is None:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _counts(name: str, value: str | None) -> list[int] | None:
    """``--clients 1,50`` -> ``[1, 50]`` (a usage error for anything but integers)."""
    if value is None:
        return None
    try:
        return [int(item) for item in _items([value]) or []]
    except ValueError:
        _fail(f"{name} takes a comma list of integers, not {value!r}", 2)
        return None


@app.command()
def bench(
    scenario: Annotated[
        list[str] | None, typer.Option(help="echo, fanout or all; repeatable or a comma list [default: all]")
    ] = None,
    runtime: Annotated[
        list[str] | None, typer.Option(help="inline and/or ray (repeatable or comma list) [default: inline]")
    ] = None,
    clients: Annotated[str | None, typer.Option(help="echo: concurrent clients, comma list [1,50]")] = None,
    subscribers: Annotated[
        str | None, typer.Option(help="fan-out: room sizes, comma list [100,1000]")
    ] = None,
    mode: Annotated[
        list[str] | None, typer.Option(help="fan-out: flat (closed loop) and/or rate [default: both]")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="fan-out rate mode: publishes per second [50]")] = None,
    inflight: Annotated[
        int | None, typer.Option(help="fan-out flat mode: publishes unanswered at once [1]")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="measured seconds per run [10]")] = None,
    warmup: Annotated[float | None, typer.Option(help="unmeasured seconds before each window [2]")] = None,
    idle: Annotated[
        float | None, typer.Option(help="fan-out: seconds of CPU-at-rest measurement [3]")
    ] = None,
    settle: Annotated[float | None, typer.Option(help="fan-out: pause after joins and leaves [2]")] = None,
    baseline: Annotated[
        bool, typer.Option(help="also run the framework-free baseline server(s), for baseline_ratio")
    ] = True,
    baseline_library: Annotated[
        list[str] | None, typer.Option(help="baseline servers: websockets and/or picows [websockets]")
    ] = None,
    client: Annotated[
        str | None, typer.Option(help="generator client: raw, websockets or picows [raw]")
    ] = None,
    gateways: Annotated[int | None, typer.Option(help="gateway actors on Ray [1]")] = None,
    shard_hosts: Annotated[int | None, typer.Option(help="processes hosting the shards on Ray [1]")] = None,
    colocate: Annotated[
        bool, typer.Option("--colocate", help="Ray target with the shards inside the gateways' processes")
    ] = False,
    serve_arg: Annotated[
        list[str] | None,
        typer.Option(help="extra 'mesh-actors serve' argument, e.g. --serve-arg=--room-shards=1"),
    ] = None,
    server_env: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE environment for the servers (repeatable)")
    ] = None,
    threads: Annotated[bool, typer.Option(help="fan-out: server CPU by thread, context switches")] = False,
    profile: Annotated[Path | None, typer.Option(help="fan-out: py-spy the mesh processes into DIR")] = None,
    out: Annotated[Path | None, typer.Option(help="write NAME.jsonl and NAME.png into this folder")] = None,
    name: Annotated[str | None, typer.Option(help="file stem in --out [bench-<runtime>-<UTC time>]")] = None,
    quick: Annotated[
        bool, typer.Option(help="smoke run: inline, C=1,5, S=20, 0.5 s windows (other options still apply)")
    ] = False,
    server_cpu: Annotated[int, typer.Option(help="core for the server and its Redis (taskset)")] = 0,
    generator_cpu: Annotated[int, typer.Option(help="core for this load generator")] = 1,
    no_pin: Annotated[bool, typer.Option("--no-pin", help="do not pin (e.g. on a one-core machine)")] = False,
) -> None:
    """Benchmark echo round trips and room fan-out against a baseline; JSON lines on stdout.

    Each server (baseline, then mesh-actors) runs as a subprocess pinned to --server-cpu; this
    process generates the load from --generator-cpu. A table goes to stderr. Exit status 1 if a
    request or delivery was lost, wrong or out of order, or a server did not start.
    """
    from .bench import BenchConfigError, BenchOptions, run_bench

    options = BenchOptions.quick() if quick else BenchOptions()
    scenarios = _items(scenario)
    if scenarios is not None:
        options.scenarios = ["echo", "fanout"] if "all" in scenarios else scenarios
    given: dict[str, Any] = {
        "runtimes": _items(runtime),
        "clients": _counts("--clients", clients),
        "subscribers": _counts("--subscribers", subscribers),
        "modes": _items(mode),
        "rate": rate,
        "inflight": inflight,
        "duration": duration,
        "warmup": warmup,
        "idle": idle,
        "settle": settle,
        "baselines": _items(baseline_library),
        "client": client,
        "gateways": gateways,
        "shard_hosts": shard_hosts,
        "colocate": colocate or None,
        "serve_args": serve_arg,
        "server_env": server_env,
        "profile": profile,
        "out": out,
        "name": name,
    }
    for key, value in given.items():
        if value is not None:
            setattr(options, key, value)
    options.threads = threads
    if not baseline:
        options.baselines = []
    options.server_cpu, options.generator_cpu = (None, None) if no_pin else (server_cpu, generator_cpu)
    try:
        result = run_bench(options)
    except BenchConfigError as error:
        _fail(str(error), 2)
        return
    raise typer.Exit(result.status)


@app.command("drain-node")
def drain_node(
    address: Annotated[str, typer.Option(help="Ray cluster to connect to: auto, ray://host:10001")] = "auto",
    node_id: Annotated[
        str | None, typer.Option(help="Ray node id (hex) [default: the node this command runs on]")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option(help="only this deployment's gateways (its name, mesh-xxxxxxxxxx)")
    ] = None,
) -> None:
    """Drain the mesh gateways on a Ray node before it goes away (e.g. a KubeRay preStop hook).

    Each gateway closes its sockets with 1001 "going away"; clients reconnect to gateways on
    other nodes, and the supervisor starts the replacements elsewhere.
    """
    if importlib.util.find_spec("ray") is None:
        _fail("drain-node needs Ray: pip install 'mesh-actors[ray]'", 2)
    from .runtime.ray import drain_node as drain
    from .runtime.ray import init_ray

    try:
        init_ray(address)
    except ConnectionError as error:
        _fail(f"cannot reach the Ray cluster at {address!r}: {error}")
    drained = drain(node_id, deployment=deployment)
    for gateway_id, connections in sorted(drained.items()):
        typer.echo(f"drained {gateway_id} ({connections} connection(s))")
    typer.echo(f"{len(drained)} gateway(s) drained")


@app.command()
def version() -> None:
    """Print the mesh-actors version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
