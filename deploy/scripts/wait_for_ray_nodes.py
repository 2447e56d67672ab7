"""Wait until a running Ray cluster has at least N live nodes.

The supervisor spreads its gateways over the nodes that exist when it starts, and on a fresh
cluster the workers join after the head (``ray up`` starts them from the head's autoscaler, KubeRay
starts worker pods once the head answers). ``mesh-ray-node`` runs this first, so that the
gateways land on every node instead of all on the head.

    python wait_for_ray_nodes.py --min-nodes 3 --timeout 300 [--address auto]

Exit status: 0 when the nodes are there, 3 on timeout, 4 when Ray cannot be reached at all.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time


def _alive_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-nodes", type=int, required=True, help="live Ray nodes to wait for")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up")
    parser.add_argument("--address", default="auto", help="Ray address (default: this machine's cluster)")
    args = parser.parse_args(argv)

    import ray

    deadline = time.monotonic() + args.timeout
    while True:
        try:
            # A driver with no dashboard and no log forwarding: it only reads the node table.
            ray.init(address=args.address, logging_level=logging.WARNING, log_to_driver=False)
            break
        except (ConnectionError, RuntimeError) as error:
            if time.monotonic() >= deadline:
                print(
                    f"wait_for_ray_nodes: cannot connect to Ray at {args.address}: {error}", file=sys.stderr
                )
                return 4
            time.sleep(2)

    try:
        last_report = 0.0
        while True:
            alive = _alive_nodes()
            if alive >= args.min_nodes:
                print(f"wait_for_ray_nodes: {alive} Ray nodes alive", file=sys.stderr)
                return 0
            now = time.monotonic()
            if now >= deadline:
                print(
                    f"wait_for_ray_nodes: {alive} of {args.min_nodes} Ray nodes after {args.timeout:.0f}s",
                    file=sys.stderr,
                )
                return 3
            if now - last_report >= 10:
                print(
                    f"wait_for_ray_nodes: {alive} of {args.min_nodes} Ray nodes alive; waiting",
                    file=sys.stderr,
                )
                last_report = now
            time.sleep(1)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
