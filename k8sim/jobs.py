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

from k8sim import store, topology
from k8sim.kube import Kube, KubeError
from k8sim.settings import NodeSettings

log = logging.getLogger("k8sim.jobs")
FIELD_MANAGER = "k8sim-nodes"


async def migrate(database_url: str) -> list[int]:
    pool = await store.connect(database_url, timeout=10)
    try:
        return await store.migrate(pool)
    finally:
        await pool.close()


async def nodes(action: str, settings: NodeSettings, shards: int = 1) -> list[str]:
    """Register (or remove) every node of the pools as KWOK fake nodes, as the chart's Job and the
    local cluster's start do, each labelled with its KWOK shard when there are several; returns
    their names."""
    manifests = topology.node_manifests(topology.load_pools(settings.nodepools), settings.node_ip_range, shards)
    kube = Kube(settings.kubeconfig, agent="k8sim-jobs")
    try:
        for node in manifests:
            if action == "delete":
                await kube.delete("v1", "Node", node["metadata"]["name"])
            else:
                await register_node(kube, node)
    finally:
        await kube.close()
    return [node["metadata"]["name"] for node in manifests]


async def register_node(kube: Kube, node: dict[str, Any]) -> None:
    """Register a node as a kubelet does: one create that carries its status (capacity, allocatable,
    addresses, node info), so that no version of the node ever lacks them.

    KWOK renders a stage from the version of the node it queued the stage for, and patches without a
    precondition. A node created bare and given its status by a second write let KWOK's
    ``node-initialize`` render from the bare version (its defaults: cpu 1k, memory 1Ti, pods 1M), and
    whenever that patch landed after our status, the defaults stayed. An existing node (a restart)
    gets its metadata, spec and status written again; KWOK keeps its conditions from then on."""
    name = node["metadata"]["name"]
    try:
        await kube.create(node, field_manager=FIELD_MANAGER)
        return
    except KubeError as exc:
        if exc.status != 409:
            raise
    await kube.apply({k: v for k, v in node.items() if k != "status"}, field_manager=FIELD_MANAGER)
    await kube.patch("v1", "Node", name, {"status": node["status"]}, subresource="status")


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
    settings = NodeSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "migrate":
            done = asyncio.run(migrate(settings.database_url))
            print(f"k8sim: migrations applied: {done or 'none pending'}", file=sys.stderr)
        elif args.command == "kwok-config":
            text = topology.kwok_config(args.profile)
            if args.out:
                args.out.write_text(text)
            else:
                sys.stdout.write(text)
        else:
            count = len(asyncio.run(nodes(args.action, settings, settings.kwok_shards)))
            print(f"k8sim: {count} nodes {'registered' if args.action == 'apply' else 'removed'}", file=sys.stderr)
    except (topology.TopologyError, KubeError, OSError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
