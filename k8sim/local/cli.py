"""Command line of the local simulator (``python -m k8sim``): build, start and stop its parts.

    python -m k8sim setup | run | up | down | status | cluster-up | cluster-down |
                     cluster-delete | services-up | services-down
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from k8sim.local import build, cluster, karpenter, services, supervisor
from k8sim.local.processes import ClusterError
from k8sim.local.settings import ClusterSettings
from k8sim.topology import TopologyError


def setup(settings: ClusterSettings) -> None:
    """The control plane's binaries and Karpenter's (helm is built only by the chart's test, when it needs it)."""
    build.ensure_binaries(settings)
    if settings.karpenter:
        build.ensure_karpenter(settings)


def up(settings: ClusterSettings) -> None:
    services.up(settings)
    cluster.up(settings)


def run(settings: ClusterSettings) -> None:
    """Everything, then the simulator's own processes in the foreground (Ctrl-C stops them)."""
    up(settings)
    supervisor.run(settings)


def down(settings: ClusterSettings) -> None:
    cluster.down(settings)
    services.down(settings)


def status(settings: ClusterSettings) -> None:
    if not settings.karpenter:
        autoscaler = "off"
    else:
        autoscaler = "ready" if karpenter.healthy(settings) else "down"
    print(f"cluster: {'ready' if cluster.is_ready(settings) else 'down'}  "
          f"postgres: {'up' if services.pg_running(settings) else 'down'}  "
          f"redis: {'up' if services.redis_running(settings) else 'down'}  karpenter: {autoscaler}")


COMMANDS: dict[str, Callable[[ClusterSettings], object]] = {
    "setup": setup,
    "run": run,
    "up": up,
    "down": down,
    "status": status,
    "cluster-up": cluster.up,
    "cluster-down": cluster.down,
    "cluster-delete": cluster.delete,
    "services-up": services.up,
    "services-down": services.down,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="k8sim", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    settings = ClusterSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        COMMANDS[args.command](settings)
    except (ClusterError, TopologyError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    return 0

