"""Karpenter on the simulated cluster: its NodePools and KWOKNodeClasses per profile, and the node
bootstrap that makes the nodes its KWOK provider creates look like the static pools' nodes.

Karpenter's KWOK provider creates a bare Node (``kwok-<nodeclaim>-…``, annotation
``kwok.x-k8s.io/node: fake``) whose capacity is the NodeClaim's *requests*, with no addresses and no
node info; our KWOK then plays it with our stages (its node-initialize fills what is missing with
KWOK's defaults). A cloud's node bootstrap is what gives a real node its identity, so ``python -m
k8sim.karpenter nodes`` does that here: the instance type's capacity, an InternalIP from a range of its
own and the Hostname, the kubelet's node info, and the labels of the kubelet (its hostname) and of GPU
Feature Discovery. It is level-triggered: KWOK renders a stage from the
version it saw and patches without a precondition, so a write of ours can be overtaken once; every
later event on the node (KWOK's own patch among them) brings it back to the wanted status.

    python -m k8sim.karpenter instance-types OUT          # the provider's instance-type file (JSON)
    python -m k8sim.karpenter nodepools PROFILE           # NodePools and KWOKNodeClasses (YAML)
    python -m k8sim.karpenter nodes --instance-types F --ip-range CIDR   # the node bootstrap, forever
    python -m k8sim.karpenter apply PROFILE [--instance N] [--overrides JSON] [--dry-run]   # the chart's Job
    python -m k8sim.karpenter delete [--instance N] [--wait SECONDS]                       # its pre-delete Job
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from k8sim import gpus, instancetypes, topology
from k8sim.instancetypes import InstanceType, InstanceTypeError
from k8sim.kube import Kube, KubeError
from k8sim.settings import CLUSTER_DATA, NodeSettings

log = logging.getLogger("k8sim.karpenter")

PROFILES = CLUSTER_DATA / "karpenter" / "profiles.yaml"
NODEPOOL_API = "karpenter.sh/v1"
NODECLASS_API = "karpenter.kwok.sh/v1alpha1"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
POOL_LABEL = "k8sim.io/pool"
#: Every object we apply carries it, so that a profile's NodePools can be found (and pruned) again.
MANAGED_BY = {"app.kubernetes.io/managed-by": "k8sim"}
FIELD_MANAGER = "k8sim-karpenter-nodes"


#: What a profile sets (and what the chart's ``karpenter.profileOverrides`` may override).
PROFILE_KEYS = ("consolidate_after", "capacity_types", "max_nodes", "provisioning_delay")


def profile_settings(profile: str, path: Path = PROFILES, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A profile's settings, checked; ``overrides`` replace its keys (``provisioning_delay`` per family)."""
    profiles = yaml.safe_load(path.read_text()) or {}
    if profile not in profiles:
        raise InstanceTypeError(f"{path}: no Karpenter settings for profile {profile!r}; "
                                f"choose one of {sorted(profiles)}")
    conf = dict(profiles[profile])
    unknown_keys = sorted(set(overrides or {}) - set(PROFILE_KEYS))
    if unknown_keys:
        raise InstanceTypeError(f"profile overrides: unknown keys {unknown_keys}; choose from {list(PROFILE_KEYS)}")
    for key, value in (overrides or {}).items():
        if key == "provisioning_delay":
            if not isinstance(value, dict):
                raise InstanceTypeError("profile overrides: provisioning_delay must map families to durations")
            conf[key] = {**(conf.get(key) or {}), **value}
        else:
            conf[key] = value
    unknown = set(conf.get("capacity_types") or []) - set(instancetypes.CAPACITY_TYPES)
    if unknown or not conf.get("capacity_types"):
        raise InstanceTypeError(f"{path}: profile {profile}: capacity_types must be some of "
                                f"{instancetypes.CAPACITY_TYPES}")
    if int(conf.get("max_nodes", 0)) < 1:
        raise InstanceTypeError(f"{path}: profile {profile}: max_nodes must be at least 1")
    for key, value in {"consolidate_after": conf.get("consolidate_after"),
                       **{f"provisioning_delay.{k}": v for k, v in (conf.get("provisioning_delay") or {}).items()}
                       }.items():
        if duration_seconds(value) is None:
            raise InstanceTypeError(f"{path}: profile {profile}: {key} must be a duration like 30s, 2m or 1h")
    return conf


def duration_seconds(text: Any) -> int | None:
    """Seconds of a Karpenter duration ("30s", "2m", "1h30m"); None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    total, number = 0, ""
    for char in text:
        if char.isdigit():
            number += char
        elif char in "smh" and number:
            total += int(number) * {"s": 1, "m": 60, "h": 3600}[char]
            number = ""
        else:
            return None
    return None if number else total


def pool_groups(pools: list[dict[str, Any]], types: list[InstanceType]) -> list[dict[str, Any]]:
    """One NodePool per static pool (its instance type, plus the catalog's of the same GPU type) and one
    per GPU type that only the catalog has: name, instance types, GPU type and the pool's labels. A
    MIG or time-sliced pool's NodePool has its own instance type only: the catalog's are whole GPUs,
    and a node of another shape would break what its labels promise."""
    groups: list[dict[str, Any]] = []
    own_of = {pool: t for t in types for pool in t.pools}
    taken: set[str] = set()
    for pool in pools:
        own = own_of.get(str(pool["name"]))
        if own is None:
            raise InstanceTypeError(f"NodePool {pool['name']}: instance type {pool.get('instance_type')!r} "
                                    "is not in the instance-type table")
        gpu_type = own.gpu_type
        names = [own.name]
        if gpu_type and not own.shaped:
            names += [t.name for t in types if t.gpu_type == gpu_type and not t.pools and t.name not in taken]
        taken.update(names)
        groups.append({"name": str(pool["name"]), "instance_types": names, "gpu": gpu_type,
                       "labels": {str(k): str(v) for k, v in (pool.get("labels") or {}).items()},
                       "gpu_labels": gpus.node_labels(own.gpu_setup, own.machine) if own.shaped and own.gpu_setup
                       else {}})
    for gpu_type in topology.GPU_TYPES:  # in the GPU table's order, so the NodePools' order is stable
        names = [t.name for t in types if t.gpu_type == gpu_type and t.name not in taken]
        if names:
            taken.update(names)
            groups.append({"name": f"gpu-{gpu_type}", "instance_types": names, "gpu": gpu_type, "labels": {},
                           "gpu_labels": {}})
    return groups


def provisioning_delay(conf: dict[str, Any], instance_types: list[str]) -> str:
    """The registration delay of a NodePool's class: the longest of its instance types' families."""
    delays = conf.get("provisioning_delay") or {}
    default = delays.get("default", "0s")
    chosen = max((delays.get(name.split(".", 1)[0], default) for name in instance_types),
                 key=lambda d: duration_seconds(d) or 0)
    return str(chosen)


def nodepool_manifests(profile: str, pools: list[dict[str, Any]], types: list[InstanceType],
                       profiles: Path = PROFILES, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """KWOKNodeClasses and NodePools of a profile: the static pools' labels and GPU taint, the
    profile's capacity types, consolidation, node limit and provisioning delays."""
    conf = profile_settings(profile, profiles, overrides)
    known = {t.name for t in types}
    docs: list[dict[str, Any]] = []
    for group in pool_groups(pools, types):
        missing = [name for name in group["instance_types"] if name not in known]
        if missing:
            raise InstanceTypeError(f"NodePool {group['name']}: instance types {missing} are not in the table")
        labels = {"type": "kwok", POOL_LABEL: group["name"], **group["labels"]}
        taints = []
        if group["gpu"]:
            # Only what every instance type of the NodePool shares: GPU Feature Discovery's per-node
            # labels (the GPU count among them) come with the node (``node_labels``).
            labels["accelerator"] = f"nvidia-{group['gpu']}"
            labels["nvidia.com/gpu.product"] = gpus.model(group["gpu"]).product
            # A MIG or time-sliced pool's NodePool has one instance type, so all of GFD's labels are
            # known here: pods selecting a MIG layout or sharing strategy make Karpenter launch one.
            labels.update(group.get("gpu_labels") or {})
            taints = [dict(topology.GPU_TAINT)]
        docs.append({"apiVersion": NODECLASS_API, "kind": "KWOKNodeClass",
                     "metadata": {"name": group["name"], "labels": dict(MANAGED_BY)},
                     "spec": {"nodeRegistrationDelay": provisioning_delay(conf, group["instance_types"])}})
        spec: dict[str, Any] = {
            "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": group["name"]},
            "requirements": [
                {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": list(group["instance_types"])},
                {"key": instancetypes.CAPACITY_TYPE, "operator": "In", "values": list(conf["capacity_types"])},
            ],
            "expireAfter": "Never",
        }
        if taints:
            spec["taints"] = taints
        docs.append({"apiVersion": NODEPOOL_API, "kind": "NodePool",
                     "metadata": {"name": group["name"], "labels": dict(MANAGED_BY)},
                     "spec": {"template": {"metadata": {"labels": labels}, "spec": spec},
                              "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                                             "consolidateAfter": str(conf["consolidate_after"])},
                              "limits": {"nodes": str(int(conf["max_nodes"]))}}})
    return docs


# --------------------------------------------------------------------------- the node bootstrap

def is_karpenter_node(node: dict[str, Any]) -> bool:
    meta = node.get("metadata") or {}
    return (NODEPOOL_LABEL in (meta.get("labels") or {})
            and str((node.get("spec") or {}).get("providerID", "")).startswith("kwok://")
            and (meta.get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake")


def node_info() -> dict[str, str]:
    """What the static pools' kubelets report of their host (topology.node_manifests)."""
    return {"architecture": "amd64", "operatingSystem": "linux", "osImage": topology.OS_IMAGE,
            "kernelVersion": topology.KERNEL_VERSION, "containerRuntimeVersion": topology.CONTAINER_RUNTIME,
            "kubeletVersion": topology.KUBERNETES_VERSION, "kubeProxyVersion": topology.KUBERNETES_VERSION}


def _same_quantities(have: dict[str, Any], want: dict[str, str]) -> bool:
    if set(have) != set(want):
        return False
    try:
        return all(instancetypes.parse_quantity(have[k]) == instancetypes.parse_quantity(v) for k, v in want.items())
    except InstanceTypeError:
        return False


def status_patch(node: dict[str, Any], resources: dict[str, str] | None, address: str) -> dict[str, Any] | None:
    """The status write that makes a Karpenter node look like ours, or None when it already does:
    capacity of its instance type (keys beyond it removed), InternalIP and Hostname, node info."""
    status = node.get("status") or {}
    name = node["metadata"]["name"]
    patch: dict[str, Any] = {}
    capacity = status.get("capacity") or {}
    if resources is not None and not _same_quantities(capacity, resources):
        patch["capacity"] = {**{k: None for k in capacity if k not in resources}, **resources}
    addresses = [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}]
    if (status.get("addresses") or []) != addresses:
        patch["addresses"] = addresses
    have_info = status.get("nodeInfo") or {}
    info = node_info()
    if any(have_info.get(k) != v for k, v in info.items()):
        patch["nodeInfo"] = info
    return {"status": patch} if patch else None


REGISTERED_LABEL = "karpenter.sh/registered"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def node_labels(node: dict[str, Any], resources: dict[str, str] | None,
                gpu: tuple[gpus.GPUSetup, str] | None = None) -> dict[str, str]:
    """The labels a real node gets from its own kubelet and from GPU Feature Discovery: the kubelet's
    ``kubernetes.io/hostname`` is its node name (Karpenter's KWOK provider writes the NodeClaim's name
    there), GFD's as a static node of its pool gets them (``gpus.node_labels``) from ``gpu``, its
    instance type's GPUs as set up (MIG, time-slicing) and EC2 name; without it, whole GPUs of the
    NodePool's model (``accelerator``) counted from the instance type's resources, which differ
    between the instance types of one NodePool."""
    meta = node["metadata"]
    labels = meta.get("labels") or {}
    wanted = {HOSTNAME_LABEL: meta["name"]}
    if gpu is not None:
        wanted.update(gpus.node_labels(gpu[0], gpu[1]))
        return wanted
    gpu_type = str(labels.get("accelerator", "")).removeprefix("nvidia-")
    count = (resources or {}).get(instancetypes.GPU_RESOURCE)
    if gpu_type in gpus.MODELS and count and int(instancetypes.parse_quantity(count)) > 0:
        whole = gpus.GPUSetup(gpu_type, int(instancetypes.parse_quantity(count)))
        wanted.update(gpus.node_labels(whole, str(labels.get(INSTANCE_TYPE_LABEL, ""))))
    return wanted


def label_patch(node: dict[str, Any], resources: dict[str, str] | None,
                gpu: tuple[gpus.GPUSetup, str] | None = None) -> dict[str, Any] | None:
    """The label write ``node_labels`` wants, or None. Not before Karpenter has registered the node:
    its registration copies the NodeClaim's labels over the node's once (the hostname among them) and
    never again, as a kubelet's labels come after the node object exists."""
    labels = node["metadata"].get("labels") or {}
    if labels.get(REGISTERED_LABEL) != "true":
        return None
    missing = {k: v for k, v in node_labels(node, resources, gpu).items() if labels.get(k) != v}
    return {"metadata": {"labels": missing}} if missing else None


class Addresses:
    """InternalIPs of Karpenter's nodes: hosts of their own range in order, each node keeping its own."""

    def __init__(self, network: str):
        self.network = ipaddress.ip_network(network)
        self.by_node: dict[str, str] = {}

    def forget(self, name: str) -> None:
        self.by_node.pop(name, None)

    def reset(self, nodes: list[dict[str, Any]]) -> None:
        """After a (re)list: the nodes that hold an address of the range keep it."""
        self.by_node = {}
        for node in nodes:
            if not is_karpenter_node(node):
                continue
            for addr in (node.get("status") or {}).get("addresses") or []:
                if addr.get("type") == "InternalIP" and self._ours(addr.get("address")):
                    self.by_node.setdefault(node["metadata"]["name"], addr["address"])

    def _ours(self, address: Any) -> bool:
        try:
            return ipaddress.ip_address(str(address)) in self.network
        except ValueError:
            return False

    def address_of(self, node: dict[str, Any]) -> str:
        name = node["metadata"]["name"]
        if name in self.by_node:
            return self.by_node[name]
        used = set(self.by_node.values())
        for addr in (node.get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP" and self._ours(addr.get("address")) and addr["address"] not in used:
                self.by_node[name] = addr["address"]
                return str(addr["address"])
        for index in range(self.network.num_addresses - 11):
            candidate = str(self.network.network_address + 10 + index)  # .1-.9 left for gateways, as ours
            if candidate not in used:
                self.by_node[name] = candidate
                return candidate
        raise InstanceTypeError(f"node IP range {self.network} is full")


async def bootstrap_nodes(kube: Kube, resources: dict[str, dict[str, str]], ip_range: str,
                          gpu_setups: dict[str, tuple[gpus.GPUSetup, str]] | None = None) -> None:
    """Keep every Karpenter node's status and labels as ``status_patch`` and ``label_patch`` want them,
    forever; ``gpu_setups`` (``instancetypes.gpus_by_type``) give GFD's labels per instance type."""
    addresses = Addresses(ip_range)
    setups = gpu_setups or {}

    async def reconcile(node: dict[str, Any]) -> None:
        if not is_karpenter_node(node) or node["metadata"].get("deletionTimestamp"):
            return
        itype = (node["metadata"].get("labels") or {}).get(INSTANCE_TYPE_LABEL, "")
        if itype not in resources:
            log.warning("node %s: instance type %r is not in the instance-type file", node["metadata"]["name"], itype)
        for patch, subresource in ((status_patch(node, resources.get(itype), addresses.address_of(node)), "status"),
                                   (label_patch(node, resources.get(itype), setups.get(itype)), None)):
            if patch is None:
                continue
            try:
                await kube.patch("v1", "Node", node["metadata"]["name"], patch, subresource=subresource)
                log.info("node %s bootstrapped: %s", node["metadata"]["name"],
                         sorted(patch.get("status") or patch["metadata"]["labels"]))
            except KubeError as exc:
                if exc.status != 404:
                    log.warning("node %s: %s write failed: %s", node["metadata"]["name"], subresource or "label",
                                exc.message)

    async for change, obj in kube.list_then_watch("v1", "Node"):
        if change == "LISTED":
            addresses.reset(obj)
            for node in obj:
                await reconcile(node)
        elif change == "DELETED":
            addresses.forget(obj["metadata"]["name"])
        else:
            await reconcile(obj)


def write_instance_types(out: Path, pools_file: Path, catalog: Path = instancetypes.CATALOG) -> list[InstanceType]:
    types = instancetypes.instance_types(topology.load_pools(pools_file), instancetypes.load_catalog(catalog))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(instancetypes.provider_file(types), indent=1))
    tmp.replace(out)
    return types


# --------------------------------------------------------------------------- the chart's Jobs

INSTANCE_LABEL = "app.kubernetes.io/instance"
SHARD_LABEL = "k8sim.io/kwok-shard"


def selector(instance: str | None) -> str:
    labels = {**MANAGED_BY, **({INSTANCE_LABEL: instance} if instance else {})}
    return ",".join(f"{k}={v}" for k, v in labels.items())


def chart_manifests(profile: str, settings: NodeSettings, instance: str | None = None,
                    overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The NodePools and KWOKNodeClasses the chart applies: the profile's (with the release's
    overrides), labelled with the release so that its Jobs prune and delete only its own; with
    several KWOK shards each NodePool's nodes go to the shard of the NodePool's name, since a
    sharded KWOK plays only nodes labelled with its shard."""
    pools = topology.load_pools(settings.nodepools)
    types = instancetypes.instance_types(pools, instancetypes.load_catalog())
    docs = nodepool_manifests(profile, pools, types, overrides=overrides)
    for doc in docs:
        if instance:
            doc["metadata"]["labels"][INSTANCE_LABEL] = instance
        if doc["kind"] == "NodePool" and settings.kwok_shards > 1:
            shard = topology.shard_of(doc["metadata"]["name"], settings.kwok_shards)
            doc["spec"]["template"]["metadata"]["labels"][SHARD_LABEL] = str(shard)
    return docs


async def apply_chart_nodepools(kube: Kube, docs: list[dict[str, Any]], instance: str | None,
                                dry_run: bool = False) -> list[str]:
    """Server-side apply of ``docs`` (each KWOKNodeClass before its NodePool), then delete the
    release's NodePools and KWOKNodeClasses that ``docs`` no longer has; returns what was pruned
    (with ``dry_run``: what would be, and nothing is written)."""
    for doc in docs:
        await kube.apply(doc, field_manager=FIELD_MANAGER, dry_run=dry_run)
    pruned = []
    for api_version, kind in ((NODEPOOL_API, "NodePool"), (NODECLASS_API, "KWOKNodeClass")):
        wanted = {d["metadata"]["name"] for d in docs if d["kind"] == kind}
        for obj in await kube.list(api_version, kind, label_selector=selector(instance), metadata_only=True):
            name = obj["metadata"]["name"]
            if name not in wanted:
                pruned.append(f"{kind}/{name}")
                if not dry_run:
                    await kube.delete(api_version, kind, name)
    return pruned


async def delete_chart_nodepools(kube: Kube, instance: str | None, wait: float) -> list[str]:
    """Delete the release's NodePools, wait (up to ``wait`` seconds) for Karpenter to drain and
    terminate their NodeClaims while it still runs, then delete their KWOKNodeClasses. Without the
    wait, an uninstall that removes Karpenter first leaves NodeClaims whose finalizer nobody clears."""
    pools = [p["metadata"]["name"] for p in
             await kube.list(NODEPOOL_API, "NodePool", label_selector=selector(instance), metadata_only=True)]
    for name in pools:
        await kube.delete(NODEPOOL_API, "NodePool", name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while pools:
        claims = [c["metadata"]["name"] for c in await kube.list(NODEPOOL_API, "NodeClaim", metadata_only=True)
                  if (c["metadata"].get("labels") or {}).get(NODEPOOL_LABEL) in pools]
        if not claims:
            break
        if loop.time() >= deadline:
            log.warning("NodeClaims still terminating after %.0f s: %s", wait, claims)
            break
        await asyncio.sleep(2)  # a Job's poll of Karpenter's progress, not a test's synchronisation
    classes = [c["metadata"]["name"] for c in
               await kube.list(NODECLASS_API, "KWOKNodeClass", label_selector=selector(instance), metadata_only=True)]
    for name in classes:
        await kube.delete(NODECLASS_API, "KWOKNodeClass", name)
    return [f"NodePool/{n}" for n in pools] + [f"KWOKNodeClass/{n}" for n in classes]


async def _run_chart_job(settings: NodeSettings, args: argparse.Namespace) -> None:
    kube = Kube(settings.kubeconfig, agent="k8sim-karpenter-jobs")
    try:
        if args.command == "apply":
            docs = chart_manifests(args.profile, settings, args.instance, args.overrides)
            pruned = await apply_chart_nodepools(kube, docs, args.instance, args.dry_run)
            names = [d["metadata"]["name"] for d in docs if d["kind"] == "NodePool"]
            print(f"k8sim: NodePools {', '.join(names)} applied{' (server dry run)' if args.dry_run else ''}; "
                  f"pruned: {', '.join(pruned) or 'none'}", file=sys.stderr)
        else:
            gone = await delete_chart_nodepools(kube, args.instance, args.wait)
            print(f"k8sim: deleted {', '.join(gone) or 'nothing'}", file=sys.stderr)
    finally:
        await kube.close()


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text or "{}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k8sim.karpenter", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    types = sub.add_parser("instance-types", help="write the provider's instance-type file")
    types.add_argument("out", type=Path)
    pools = sub.add_parser("nodepools", help="print a profile's NodePools and KWOKNodeClasses")
    pools.add_argument("profile")
    nodes = sub.add_parser("nodes", help="run the node bootstrap")
    nodes.add_argument("--instance-types", type=Path, required=True)
    nodes.add_argument("--ip-range", required=True)
    apply = sub.add_parser("apply", help="apply a profile's NodePools and KWOKNodeClasses (the chart's Job)")
    apply.add_argument("profile")
    apply.add_argument("--instance", help="the Helm release: labels what is applied and bounds the pruning")
    apply.add_argument("--overrides", type=_json_object, default={},
                       help=f"JSON object over the profile's settings ({', '.join(PROFILE_KEYS)})")
    apply.add_argument("--dry-run", action="store_true", help="the apiserver's server-side dry run only")
    delete = sub.add_parser("delete", help="delete the release's NodePools and KWOKNodeClasses")
    delete.add_argument("--instance")
    delete.add_argument("--wait", type=float, default=120.0,
                        help="seconds to wait for Karpenter to terminate the NodePools' NodeClaims")
    args = parser.parse_args(argv)
    settings = NodeSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "instance-types":
            write_instance_types(args.out, settings.nodepools)
        elif args.command == "nodepools":
            found = instancetypes.instance_types(topology.load_pools(settings.nodepools), instancetypes.load_catalog())
            docs = nodepool_manifests(args.profile, topology.load_pools(settings.nodepools), found)
            sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
        elif args.command in ("apply", "delete"):
            asyncio.run(_run_chart_job(settings, args))
        else:
            document = json.loads(args.instance_types.read_text())
            resources = instancetypes.resources_by_type(document)
            setups = instancetypes.gpus_by_type(document)
            ipaddress.ip_network(args.ip_range)
            asyncio.run(_run_bootstrap(settings, resources, args.ip_range, setups))
    except (InstanceTypeError, topology.TopologyError, KubeError, OSError, ValueError) as exc:
        print(f"k8sim: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run_bootstrap(settings: NodeSettings, resources: dict[str, dict[str, str]], ip_range: str,
                         setups: dict[str, tuple[gpus.GPUSetup, str]]) -> None:
    kube = Kube(settings.kubeconfig, agent="k8sim-karpenter-nodes")
    try:
        await bootstrap_nodes(kube, resources, ip_range, setups)
    finally:
        await kube.close()


if __name__ == "__main__":
    sys.exit(main())

