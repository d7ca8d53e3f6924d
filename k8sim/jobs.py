"""What the Helm chart's Jobs and init containers run inside a real cluster, from the same sources
as the local simulator: store migrations, KWOK's configuration for a profile, and the fake nodes.

    python -m k8sim.jobs migrate                      # K8SIM_DATABASE_URL
    python -m k8sim.jobs kwok-config PROFILE [OUT]    # KwokConfiguration + the profile's stages
    python -m k8sim.jobs nodes apply|delete           # K8SIM_NODEPOOLS, K8SIM_NODE_IP_RANGE, K8SIM_KWOK_SHARDS
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from k8sim import store
from k8sim.kube import Kube, KubeError
from k8sim.local import topology
from k8sim.local.processes import ClusterError
from k8sim.local.settings import ClusterSettings

log = logging.getLogger("k8sim.jobs")
FIELD_MANAGER = "k8sim-nodes"


#: KWOK's options in the chart. A KwokConfiguration read from a file gets no defaults (KWOK v0.8.0
#: then refuses to start: "node leases parallelism must be greater than 0"), so every option KWOK
#: defaults is set here, to its default. Play-stage parallelism stays at 4: at 16, stale stage
#: jobs of a pod overtake newer ones (KWOK evaluates a stage's selector when it queues the job, and
#: patches without a precondition), so 2,000 pods flapped between ContainerCreating and Running
#: for minutes with about 650 Ready (measured on the local cluster).
KWOK_OPTIONS: dict[str, Any] = {
    "podPlayStageParallelism": 4, "nodePlayStageParallelism": 4, "nodeLeaseParallelism": 4,
    "podsOnNodeSyncParallelism": 1, "enablePodsOnNodeSyncListPager": True, "enablePodsOnNodeSyncStreamWatch": False,
    "enableDebuggingHandlers": True, "enableProfilingHandler": True, "enableContentionProfiling": False,
    "nodeLeaseDurationSeconds": int(topology.KWOK_FLAGS["node-lease-duration-seconds"]),
}


def kwok_config(profile: str) -> str:
    """KWOK's own configuration file: its options and the stages with the profile's delays, one
    YAML stream, as `kwok --config` reads it."""
    docs = [{"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration", "options": KWOK_OPTIONS},
            *topology.stages_for_profile(profile)]
    return yaml.safe_dump_all(docs, sort_keys=False)


async def migrate(database_url: str) -> list[int]:
    pool = await store.connect(database_url, timeout=10)
    try:
        return await store.migrate(pool)
    finally:
        await pool.close()


async def nodes(action: str, settings: ClusterSettings, shards: int = 1) -> list[str]:
    """Register (or remove) every node of the pools as KWOK fake nodes, as the chart's Job and the
    local cluster's start do, each labelled with its KWOK shard when there are several; returns
    their names."""
    manifests = topology.node_manifests(topology.load_pools(settings.nodepools), settings.node_ip_range, shards)
    kube = Kube(settings.kubeconfig, agent="k8sim-jobs")
    try:
        for node in manifests:
            name = node["metadata"]["name"]
            if action == "delete":
                await kube.delete("v1", "Node", name)
                continue
            await kube.apply({k: v for k, v in node.items() if k != "status"}, field_manager=FIELD_MANAGER)
            # A kubelet registers with its status; KWOK keeps the conditions from then on.
            await kube.patch("v1", "Node", name, {"status": node["status"]}, subresource="status")
    finally:
        await kube.close()
    return [node["metadata"]["name"] for node in manifests]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k8sim.jobs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the store's migrations")
    kwok = sub.add_parser("kwok-config", help="print KWOK's configuration for a profile")
    kwok.add_argument("profile")
    kwok.add_argument("out", nargs="?", type=Path, help="write here instead of stdout")
    node = sub.add_parser("nodes", help="register or remove the fake nodes of K8SIM_NODEPOOLS")
    node.add_argument("action", choices=["apply", "delete"])
    args = parser.parse_args(argv)
    settings = ClusterSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "migrate":
            done = asyncio.run(migrate(settings.database_url))
            print(f"k8sim: migrations applied: {done or 'none pending'}", file=sys.stderr)
        elif args.command == "kwok-config":
            text = kwok_config(args.profile)
            if args.out:
                args.out.write_text(text)
            else:
                sys.stdout.write(text)
        else:
            count = len(asyncio.run(nodes(args.action, settings, settings.kwok_shards)))
            print(f"k8sim: {count} nodes {'registered' if args.action == 'apply' else 'removed'}", file=sys.stderr)
    except (ClusterError, KubeError, OSError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
