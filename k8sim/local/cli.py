"""Command line of the local simulator (``python -m k8sim``): build, start and stop its parts.

    python -m k8sim setup | run | up | down | status | cluster-up | cluster-down |
                     cluster-delete | services-up | services-down
    python -m k8sim import FILE|- [FILE …] [--scale 0.1] [--secrets keep] [--dry-run] [--json]
    python -m k8sim traffic FILE|- [--format prometheus|csv] [--scale 2] [--once] [--shift 3600] [--api URL]
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

import httpx

from k8sim import importer
from k8sim.kube import Kube, KubeError
from k8sim.local import build, cluster, karpenter, services, supervisor
from k8sim.local.processes import ClusterError
from k8sim.local.settings import ClusterSettings
from k8sim.manifests import Limits, ManifestError
from k8sim.settings import ImportSettings, TrafficSettings
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


def traffic_format(name: str, text: str) -> str:
    """A traffic file's format from its name, else from its first character (JSON is Prometheus')."""
    if name.lower().endswith(".csv"):
        return "csv"
    if name.lower().endswith(".json"):
        return "prometheus"
    return "prometheus" if text.lstrip()[:1] in ("{", "[") else "csv"


def traffic_command(argv: list[str]) -> int:
    """``python -m k8sim traffic``: replay a traffic file through the running simulator's API."""
    settings = TrafficSettings()
    parser = argparse.ArgumentParser(prog="k8sim traffic", description="Replay real traffic (a Prometheus "
                                     "query_range result or a CSV timestamp,namespace,service,rps) in place of "
                                     "those services' synthetic load")
    parser.add_argument("file", help="the traffic file, or - for standard input")
    parser.add_argument("--format", choices=["prometheus", "csv"], help="default: from the file's name or text")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every point (2: twice the traffic)")
    parser.add_argument("--once", action="store_true", help="play it once (default: loop)")
    parser.add_argument("--shift", type=float, default=0.0, help="start this many seconds into the file")
    parser.add_argument("--namespace-label", default="namespace", help="label (CSV column) of the namespace")
    parser.add_argument("--service-label", default="service", help="label (CSV column) of the service")
    parser.add_argument("--api", default=settings.api_url, help=f"the simulator's API (default {settings.api_url})")
    parser.add_argument("--json", action="store_true", help="print the API's answer as JSON on stdout")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"k8sim traffic: {exc}", file=sys.stderr)
        return 1
    body = {"format": args.format or traffic_format(args.file, text), "data": text, "loop": not args.once,
            "scale": args.scale, "shift_seconds": args.shift, "namespace_label": args.namespace_label,
            "service_label": args.service_label}
    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"} if settings.api_token else {}
    try:
        answer = httpx.post(f"{args.api.rstrip('/')}/monitoring/traffic", json=body, headers=headers, timeout=60)
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"k8sim traffic: {args.api}: {exc}", file=sys.stderr)
        return 1
    if answer.status_code != 200:
        print(f"k8sim traffic: {answer.status_code} {document.get('message', answer.text)}", file=sys.stderr)
        for problem in document.get("errors") or []:
            where = ", ".join(f"{k} {v}" for k, v in problem.items() if k != "message")
            print(f"  {where + ': ' if where else ''}{problem.get('message', problem)}", file=sys.stderr)
        return 1
    series = document.get("services") or []
    unmatched = [s["service"] for s in series if s.get("matched") is False]
    print(f"k8sim traffic: replaying {len(series)} series, {document.get('points')} points over "
          f"{document.get('duration_seconds')} s ({'looped' if document.get('loop') else 'once'}, "
          f"x{document.get('scale')})", file=sys.stderr)
    for key in unmatched:
        print(f"k8sim traffic: no service {key} runs yet (it plays once one does)", file=sys.stderr)
    if args.json:
        print(json.dumps(document, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["import"]:
        return import_command(argv[1:])
    if argv[:1] == ["traffic"]:
        return traffic_command(argv[1:])
    parser = argparse.ArgumentParser(prog="k8sim", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted([*COMMANDS, "import", "traffic"]))
    args = parser.parse_args(argv)
    settings = ClusterSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        COMMANDS[args.command](settings)
    except (ClusterError, TopologyError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    return 0

