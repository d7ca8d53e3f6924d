"""Command line of the local simulator (``python -m k8sim``): build, start and stop its parts.

    python -m k8sim setup | run | up | down | status | cluster-up | cluster-down |
                     cluster-delete | services-up | services-down
    python -m k8sim import FILE|- [FILE …] [--scale 0.1] [--secrets keep] [--dry-run] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from k8sim import importer
from k8sim.kube import Kube, KubeError
from k8sim.local import build, cluster, karpenter, services, supervisor
from k8sim.local.processes import ClusterError
from k8sim.local.settings import ClusterSettings
from k8sim.manifests import Limits, ManifestError
from k8sim.settings import ImportSettings
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


def import_command(argv: list[str]) -> int:
    """``python -m k8sim import``: a cluster's export into the running simulator, with progress."""
    parser = argparse.ArgumentParser(prog="k8sim import", description="Import a cluster's nodes and workloads from "
                                     "kubectl get -A -o yaml, kubectl cluster-info dump or a kwokctl k8s snapshot")
    parser.add_argument("files", nargs="+", help="export files, or - for standard input")
    parser.add_argument("--scale", type=float, default=1.0, help="share of each node pool's nodes (0 < s <= 1)")
    parser.add_argument("--secrets", choices=["placeholder", "keep"], default="placeholder")
    parser.add_argument("--dry-run", action="store_true", help="ask the apiserver without changing anything")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON on stdout")
    args = parser.parse_args(argv)
    settings = ImportSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        sources = {("stdin" if f == "-" else f): (sys.stdin.read() if f == "-" else Path(f).read_text())
                   for f in args.files}
    except (OSError, UnicodeDecodeError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    limits = Limits(max_bytes=settings.import_max_bytes, max_documents=settings.import_max_objects)
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        # A line a second at most: a 10,000-object import would otherwise print 10,000.
        if done == total or time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            print(f"k8sim import: {done}/{total} applied ({stage})", file=sys.stderr)

    async def go() -> importer.Report:
        kube = Kube(settings.kubeconfig, agent="k8sim-import")
        try:
            return await importer.run(kube, sources, limits=limits, scale=args.scale,
                                      keep_secrets=args.secrets == "keep", dry_run=args.dry_run,
                                      ip_range=settings.node_ip_range, concurrency=settings.import_concurrency,
                                      on_progress=progress)
        finally:
            await kube.close()

    try:
        report = asyncio.run(go())
    except (ManifestError, KubeError) as exc:
        print(f"k8sim import: {exc}", file=sys.stderr)
        return 1
    for entry in (*report.nodes, *report.objects):
        if entry.action == "failed":
            print(f"k8sim import: failed {entry.id}: {entry.reason}", file=sys.stderr)
    counts = ", ".join(f"{n} {k}" for k, n in report.counts().items() if n)
    print(f"k8sim import ({report.format}): {counts} in {report.elapsed:.1f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 1 if report.failed_count else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["import"]:
        return import_command(argv[1:])
    parser = argparse.ArgumentParser(prog="k8sim", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted([*COMMANDS, "import"]))
    args = parser.parse_args(argv)
    settings = ClusterSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        COMMANDS[args.command](settings)
    except (ClusterError, TopologyError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    return 0

