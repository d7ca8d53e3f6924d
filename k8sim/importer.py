"""Importing a cluster: a real cluster's nodes and workloads, as a user can export them, brought into the
simulator.

Reads what needs no agent in the source cluster: ``kubectl get … -A -o yaml`` (a ``List``, or several
YAML documents or files), ``kubectl cluster-info dump`` (JSON Lists one after another, their items
without ``kind``, container logs between ``==== START logs …`` and ``==== END logs …`` lines) and
``kwokctl snapshot save --format k8s`` (a YAML stream). Parsing is :mod:`k8sim.manifests`' (the same
limits against hostile input as a deploy); applying is server-side apply through :class:`Kube`.

:func:`plan` is pure: which objects to apply, cleaned of what the source cluster owns, in dependency
order; which to skip and why; the nodes to register (KWOK plays them, as it plays ours); and the source's
totals. :func:`apply` writes a plan to the cluster with bounded concurrency and reports per object.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from k8sim import capacity, deploy, manifests, topology
from k8sim.jobs import register_node
from k8sim.kube import Kube, KubeError, UnknownKind
from k8sim.manifests import Document, Limits, ManifestError, Problem
from k8sim.resources import Resources, pod_requests

log = logging.getLogger(__name__)

FIELD_MANAGER = "k8sim-import"
#: Where the last import's source totals are kept, for /cluster/capacity: in the cluster itself, so
#: that a CLI import and the API see the same, and a new cluster starts without one.
SOURCE_CONFIGMAP = ("kube-system", "k8sim-import-source")
#: Every imported node carries it (the import's own mark: cleanup and listing select on it).
IMPORTED_LABEL = "k8sim.io/imported"
PLACEHOLDER = b"k8sim-import-placeholder"


# --------------------------------------------------------------------------- reading


def _is_json_stream(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value Kubernetes writes")


def _too_deep(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def _json_documents(text: str, file: str | None, start_index: int, limits: Limits) -> list[tuple[int, Any]]:
    """The JSON documents of ``kubectl get -o json`` or a cluster-info dump (concatenated, with container
    logs between them), read by the JSON decoder: JSON has no aliases to expand, so only depth and
    count are bounded here (size was, before)."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    documents: list[tuple[int, Any]] = []
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos] in " \t\r\n":
            pos += 1
        if pos >= size:
            return documents
        index = start_index + len(documents)
        if text.startswith("==== START logs for container", pos):
            end = text.find("\n==== END logs for container", pos)
            if end < 0:
                return documents  # a dump cut short inside a log: the objects before it stand
            stop = text.find("\n", end + 1)
            pos = size if stop < 0 else stop + 1
            continue
        too_deep = False
        try:
            value, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, ValueError) as exc:
            at = exc.pos if isinstance(exc, json.JSONDecodeError) else pos
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            problem = Problem(f"not YAML or JSON: {message}", index=index, file=file,
                              line=text.count("\n", 0, at) + 1)
            raise ManifestError(str(problem), [problem], status=422) from None
        except RecursionError:
            too_deep, value, end = True, None, pos
        if too_deep or _too_deep(value, limits.max_depth):
            problem = Problem(f"nested deeper than {limits.max_depth} levels", index=index, file=file)
            raise ManifestError(str(problem), [problem], status=422) from None
        documents.append((index, value))
        if len(documents) + start_index > limits.max_documents:
            raise ManifestError(f"more than {limits.max_documents} documents", status=413)
        pos = end


def read(source: str | Mapping[str, str], limits: Limits) -> tuple[list[Document], str]:
    """Every object of an export and the export's format (``list``, ``yaml``, ``cluster-info-dump``,
    ``kwokctl-snapshot``); raises ManifestError (422 naming the problem) for anything else."""
    sources = manifests.split_sources(source)
    total = sum(len(text.encode("utf-8", "surrogatepass")) for _, text in sources if isinstance(text, str))
    if total > limits.max_bytes:
        raise ManifestError(f"export is {total} bytes; the limit is {limits.max_bytes}", status=413)
    # One `kubectl get -A -o yaml` is one document of millions of YAML nodes. Without aliases a node takes
    # at least a byte of text, so a bound of the text's size never refuses a real export and still
    # stops an alias bomb at the size of what was sent.
    limits = dataclasses.replace(limits, max_nodes=max(limits.max_nodes, total))
    documents: list[Document] = []
    problems: list[Problem] = []
    formats: set[str] = set()
    index = 0
    for file, text in sources:
        if not isinstance(text, str):
            raise ManifestError(f"{file}: expected text", [Problem("expected text", file=file)], status=422)
        if _is_json_stream(text):
            values = _json_documents(text, file, index, limits)
            formats.add("cluster-info-dump" if len(values) > 1 or "==== START logs" in text else "json")
        else:
            try:
                values = manifests.load_yaml(text, file=file, start_index=index, limits=limits)
            except ManifestError as exc:
                raise ManifestError(str(exc).replace("invalid YAML", "not YAML or JSON"), exc.problems,
                                    status=exc.status if exc.status == 413 else 422) from None
            lists = [v for _, v in values if isinstance(v, dict) and str(v.get("kind", "")).endswith("List")]
            formats.add("list" if lists else "kwokctl-snapshot" if _kwokctl_like(values) else "yaml")
        for doc_index, value in values:
            for obj in manifests.expand(value, doc_index, file, problems):
                documents.append(Document(obj, doc_index, file))
            index = doc_index + 1
        if len(documents) > limits.max_documents:
            raise ManifestError(f"more than {limits.max_documents} objects", status=413)
    for doc in documents:
        problems.extend(manifests.check_structure(doc))
    if problems:
        raise ManifestError(f"{len(problems)} problem(s): " + "; ".join(map(str, problems[:5])), problems, 422)
    if not documents:
        raise ManifestError("the export holds no Kubernetes objects", [Problem("no objects")], 422)
    return documents, "+".join(sorted(formats))


def _kwokctl_like(values: list[tuple[int, Any]]) -> bool:
    """kwokctl's k8s snapshot: one object per document, as the apiserver returned it (managedFields and
    all), Namespaces first."""
    first = values[0][1] if values else None
    return (isinstance(first, dict) and first.get("kind") == "Namespace"
            and bool((first.get("metadata") or {}).get("managedFields")))


# --------------------------------------------------------------------------- what is skipped, and why

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
#: Kinds the simulated cluster makes for itself, with the reason they are not imported.
CLUSTER_OWNED = {
    "Event": "events are the source cluster's record, not its state",
    "Endpoints": "the endpoints controller makes them from Services",
    "EndpointSlice": "the endpoint-slice controller makes them from Services",
    "Lease": "leases belong to the components that hold them",
    "ControllerRevision": "StatefulSets and DaemonSets record their own revisions",
    "CSINode": "the kubelet's", "ComponentStatus": "the control plane's",
    "CertificateSigningRequest": "the source cluster's kubelets' certificates",
    "NodeClaim": "its node is imported as a node; Karpenter here launches its own",
    "Binding": "the scheduler's", "TokenReview": "not an object", "SelfSubjectReview": "not an object",
    "PodMetrics": "the metrics API's", "NodeMetrics": "the metrics API's",
    "MutatingWebhookConfiguration": "its webhook does not run here (the cluster's admission would call it)",
    "ValidatingWebhookConfiguration": "its webhook does not run here (the cluster's admission would call it)",
}
#: Owners that make the objects they own (the owned object is theirs to create here too).
MAKERS = {
    "Pod": {"ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController", "Node"},
    "ReplicaSet": {"Deployment"},
    "Job": {"CronJob"},
}
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def skip_reason(obj: Mapping[str, Any]) -> str | None:
    """Why an object is not imported, or None when it is."""
    kind = str(obj.get("kind", ""))
    meta = obj.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), meta.get("namespace")
    labels = meta.get("labels") or {}
    if kind in CLUSTER_OWNED:
        return CLUSTER_OWNED[kind]
    if namespace in SYSTEM_NAMESPACES:
        return f"{namespace} belongs to the simulated cluster"
    if kind == "Namespace" and (name in SYSTEM_NAMESPACES or name == "default"):
        return "every cluster has it"
    if kind == "Service" and namespace == "default" and name == "kubernetes":
        return "the apiserver's own Service"
    if kind == "ConfigMap" and name == "kube-root-ca.crt":
        return "the cluster's CA, published in every namespace by the controller-manager"
    if kind == "ServiceAccount" and name == "default":
        return "every namespace has it"
    if kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        return "the token controller makes it"
    if kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding") and (
            name.startswith("system:") or labels.get("kubernetes.io/bootstrapping") == "rbac-defaults"):
        return "the cluster's own RBAC"
    if kind == "PriorityClass" and name.startswith("system-"):
        return "built into every cluster"
    if kind == "APIService":
        return ("its API is served by a pod that does not run here" if (obj.get("spec") or {}).get("service")
                else "built into every cluster")
    if kind == "PersistentVolume" and (meta.get("annotations") or {}).get(PROVISIONED_BY):
        return "its provisioner makes one here for its claim"
    owner_kind, owner_name, _ = _controller(obj)
    if owner_kind and owner_kind in MAKERS.get(kind, set()):
        return f"made by its {owner_kind} {owner_name}"
    return None


def _controller(obj: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    owner = next((o for o in owners if isinstance(o, dict) and o.get("controller")), None)
    if not owner:
        return None, None, None
    return owner.get("kind"), owner.get("name"), owner.get("uid")


# --------------------------------------------------------------------------- cleaning

SOURCE_METADATA = ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation", "selfLink",
                   "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds")
SOURCE_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision",
                      "deprecated.daemonset.template.generation", "pv.kubernetes.io/bind-completed",
                      "pv.kubernetes.io/bound-by-controller", "volume.beta.kubernetes.io/storage-provisioner",
                      "volume.kubernetes.io/storage-provisioner", "volume.kubernetes.io/selected-node",
                      "control-plane.alpha.kubernetes.io/leader")
#: Labels a Job's controller writes with the Job's uid; the apiserver refuses them back.
JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
#: Secret types whose data the apiserver validates: a placeholder for them must still be valid.
VALID_PLACEHOLDERS = {".dockerconfigjson": b'{"auths":{}}', ".dockercfg": b"{}"}


def clean(obj: Mapping[str, Any], *, keep_secrets: bool = False, nodes: Iterable[str] = (),
          volumes: Iterable[str] = ()) -> dict[str, Any]:
    """A copy without what the source cluster owns: identity and history (uid, resourceVersion,
    managedFields, timestamps, owners, whose uids mean nothing here), status, allocated addresses, the
    Job controller's uid selector, a claim's binding to a volume not imported; Secrets' values become
    placeholders unless ``keep_secrets``. A bare pod keeps its node when that node is imported."""
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    for key in SOURCE_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in SOURCE_ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            meta.pop("annotations")
    out.pop("status", None)
    kind, spec = out.get("kind"), out.get("spec")
    if not isinstance(spec, dict):
        spec = {}
    if kind == "Service":
        if spec.get("clusterIP") not in ("None", None):  # a headless Service stays headless
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
    elif kind == "Pod":
        if spec.get("nodeName") and spec["nodeName"] not in set(nodes):
            spec.pop("nodeName")
    elif kind == "Job":
        _clean_job(spec)
    elif kind == "CronJob":
        _clean_job(((spec.get("jobTemplate") or {}).get("spec")) or {})
    elif kind == "PersistentVolumeClaim":
        if spec.get("volumeName") and spec["volumeName"] not in set(volumes):
            spec.pop("volumeName")
    elif kind == "PersistentVolume":
        claim = spec.get("claimRef")
        if isinstance(claim, dict):
            for key in ("uid", "resourceVersion"):
                claim.pop(key, None)
    elif kind == "ServiceAccount":
        out.pop("secrets", None)  # the source's token Secrets
    elif kind == "Secret" and not keep_secrets:
        _placeholders(out)
    return out


def _clean_job(spec: dict[str, Any]) -> None:
    if spec.get("manualSelector"):
        return
    spec.pop("selector", None)  # generated from the source Job's uid: the apiserver generates ours
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        for key in JOB_UID_LABELS:
            labels.pop(key, None)


def _placeholders(secret: dict[str, Any]) -> None:
    secret["data"] = {key: base64.b64encode(VALID_PLACEHOLDERS.get(key, PLACEHOLDER)).decode()
                      for key in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}}
    secret.pop("stringData", None)
    if not secret["data"]:
        secret.pop("data")


# --------------------------------------------------------------------------- nodes

POOL_LABELS = ("k8sim.io/pool", "karpenter.sh/nodepool", "eks.amazonaws.com/nodegroup",
               "cloud.google.com/gke-nodepool", "kubernetes.azure.com/agentpool")
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
#: Taints the source's node lifecycle put on for a moment (not ready, unreachable, being drained):
#: they describe that node's state then, not its shape.
TRANSIENT_TAINTS = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "ToBeDeletedByClusterAutoscaler",
                    "DeletionCandidateOfClusterAutoscaler", "karpenter.sh/disrupted", "karpenter.sh/unregistered")
#: Labels that would hand the node to a KWOK controller that is not the local one.
DROPPED_LABELS = (topology.SHARD_LABEL,)


def _label(labels: Mapping[str, str], keys: Iterable[str]) -> str | None:
    return next((str(labels[k]) for k in keys if labels.get(k)), None)


def pool_of(node: Mapping[str, Any]) -> str:
    """A source node's pool: its provisioner's or cloud's node-group label, else instance type and zone."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    found = _label(labels, POOL_LABELS)
    if found:
        return found
    return f"{_label(labels, INSTANCE_TYPE_LABELS) or 'unknown'}/{_label(labels, ZONE_LABELS) or 'unknown'}"


def scale_nodes(nodes: Sequence[Mapping[str, Any]], scale: float) -> list[Mapping[str, Any]]:
    """The nodes kept at ``scale``: per pool round(count × scale), at least one, taken across the pool's
    zones in turn so that a pool keeps its spread."""
    if scale >= 1:
        return list(nodes)
    pools: dict[str, list[Mapping[str, Any]]] = {}
    for node in nodes:
        pools.setdefault(pool_of(node), []).append(node)
    kept: list[Mapping[str, Any]] = []
    for members in pools.values():
        want = max(1, round(len(members) * scale))
        zones: dict[str, list[Mapping[str, Any]]] = {}
        for node in sorted(members, key=lambda n: n["metadata"]["name"]):
            labels = node["metadata"].get("labels") or {}
            zones.setdefault(_label(labels, ZONE_LABELS) or "", []).append(node)
        queues = [zones[z] for z in sorted(zones)]
        taken = 0
        while taken < want:
            for queue in queues:
                if queue and taken < want:
                    kept.append(queue.pop(0))
                    taken += 1
    order = {id(n): i for i, n in enumerate(nodes)}
    return sorted(kept, key=lambda n: order[id(n)])


def node_object(source: Mapping[str, Any], address: str) -> dict[str, Any]:
    """The KWOK node standing in for a source node: its name, labels, taints, capacity and allocatable;
    the real kubelet's status (conditions, images, daemon endpoints, node info) replaced by ours."""
    meta = source.get("metadata") or {}
    name = str(meta["name"])
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items() if k not in DROPPED_LABELS}
    labels.setdefault("kubernetes.io/hostname", name)
    labels.setdefault(capacity.POOL_LABEL, pool_of(source).replace("/", "."))
    labels[IMPORTED_LABEL] = "true"
    spec = source.get("spec") or {}
    status = source.get("status") or {}
    taints = [dict(t) for t in spec.get("taints") or []
              if isinstance(t, dict) and not str(t.get("key", "")).startswith(TRANSIENT_TAINTS)]
    for taint in taints:
        taint.pop("timeAdded", None)
    out_spec: dict[str, Any] = {"providerID": f"kwok://{name}"}
    if taints:
        out_spec["taints"] = taints
    if spec.get("unschedulable"):
        out_spec["unschedulable"] = True
    node_capacity = {str(k): str(v) for k, v in (status.get("capacity") or {}).items()}
    node_allocatable = {str(k): str(v) for k, v in (status.get("allocatable") or node_capacity).items()}
    info = status.get("nodeInfo") or {}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": out_spec,
        "status": {
            "capacity": node_capacity, "allocatable": node_allocatable,
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "architecture": labels.get("kubernetes.io/arch") or info.get("architecture") or "amd64",
                "operatingSystem": labels.get("kubernetes.io/os") or info.get("operatingSystem") or "linux",
                "osImage": topology.OS_IMAGE, "kernelVersion": topology.KERNEL_VERSION,
                "containerRuntimeVersion": topology.CONTAINER_RUNTIME,
                "kubeletVersion": topology.KUBERNETES_VERSION, "kubeProxyVersion": topology.KUBERNETES_VERSION,
            },
        },
    }


def addresses(ip_range: str, count: int, taken: Iterable[str] = (), start: int = 0) -> list[str]:
    """``count`` InternalIPs of the range not in ``taken`` (the cluster's other nodes)."""
    used = set(taken)
    net = ipaddress.ip_network(ip_range)
    found: list[str] = []
    index = start
    while len(found) < count:
        address = topology.node_ip(ip_range, index)  # raises TopologyError when the range is exhausted
        if address not in used and ipaddress.ip_address(address) in net:
            found.append(address)
        index += 1
    return found


# --------------------------------------------------------------------------- planning

#: Apply stages, in order: what later objects use exists first. Kinds not named are workloads' peers
#: (stage "workloads"); custom resources follow once their CRDs are served.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("namespaces", ("Namespace",)),
    ("definitions", ("CustomResourceDefinition", "PriorityClass", "StorageClass", "IngressClass",
                     "RuntimeClass", "ClusterRole", "ClusterRoleBinding")),
    ("accounts", ("ServiceAccount", "Role", "RoleBinding", "ResourceQuota", "LimitRange")),
    ("configuration", ("ConfigMap", "Secret")),
    ("storage", ("PersistentVolume", "PersistentVolumeClaim")),
    ("services", ("Service",)),
    ("workloads", ()),
    ("policies", ("HorizontalPodAutoscaler", "PodDisruptionBudget", "VerticalPodAutoscaler", "ScaledObject")),
    ("custom", ()),
]
_STAGE_OF = {kind: name for name, kinds in STAGES for kind in kinds}
BUILTIN_GROUPS = ("", "apps", "batch", "networking.k8s.io", "policy", "autoscaling", "rbac.authorization.k8s.io",
                  "storage.k8s.io", "scheduling.k8s.io", "node.k8s.io", "discovery.k8s.io", "coordination.k8s.io",
                  "apiextensions.k8s.io", "admissionregistration.k8s.io", "apiregistration.k8s.io",
                  "certificates.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io", "resource.k8s.io")


def stage_of(doc: Document) -> str:
    if doc.kind in _STAGE_OF:
        return _STAGE_OF[doc.kind]
    group = doc.api_version.rpartition("/")[0]
    return "workloads" if group in BUILTIN_GROUPS else "custom"


@dataclasses.dataclass
class Entry:
    """What an import does (or did) with one object."""

    api_version: str
    kind: str
    namespace: str
    name: str
    action: str  # planned: apply | skip | fail; done: created | configured | unchanged | skipped | failed
    reason: str | None = None
    stage: str | None = None

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    def as_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "api_version": self.api_version, "kind": self.kind, "namespace": self.namespace,
                "name": self.name, "action": self.action}
        if self.reason:
            data["reason"] = self.reason
        return data


def _entry(doc: Document, action: str, reason: str | None = None, stage: str | None = None) -> Entry:
    return Entry(doc.api_version, doc.kind, doc.namespace or "", doc.name, action, reason, stage)


@dataclasses.dataclass
class Source:
    """The source cluster's totals, to compare the imported one with."""

    nodes: int
    pools: dict[str, dict[str, Any]]
    allocatable: Resources
    requested: Resources
    requested_from: str  # "pods" (the export's bound pods) or "workloads" (replicas times template)

    def as_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "pools": self.pools, "allocatable": self.allocatable.as_json(),
                "requested": self.requested.as_json(), "requested_from": self.requested_from}


@dataclasses.dataclass
class Plan:
    format: str
    scale: float
    nodes: list[dict[str, Any]]  # source nodes kept (made KWOK nodes at apply, with free addresses)
    steps: list[tuple[Document, Entry]]  # cleaned objects in apply order, each with its entry
    entries: list[Entry]  # one per object of the export, nodes excepted, in the export's order
    dropped_nodes: list[str]
    source: Source
    node_failures: list[Entry] = dataclasses.field(default_factory=list)  # nodes that cannot be made

    @property
    def objects(self) -> list[Document]:
        return [doc for doc, _ in self.steps]


def source_totals(nodes: Sequence[Mapping[str, Any]], docs: Sequence[Document]) -> Source:
    names = {n["metadata"]["name"] for n in nodes}
    allocatable = Resources()
    pools: dict[str, dict[str, Any]] = {}
    for node in nodes:
        alloc = capacity.allocatable(node)
        allocatable.add(alloc)
        pool = pools.setdefault(pool_of(node), {"nodes": 0, "allocatable": Resources()})
        pool["nodes"] += 1
        pool["allocatable"].add(alloc)
    requested = Resources()
    pods = [d.obj for d in docs if d.kind == "Pod"]
    if pods:
        for pod in pods:
            if capacity.holds(pod) and pod["spec"]["nodeName"] in names:
                requested.add(pod_requests(pod.get("spec") or {}))
        found = "pods"
    else:
        for doc in docs:
            wanted = capacity.workload_pods(doc.obj)
            if wanted and not _controller(doc.obj)[0]:
                one = pod_requests(wanted[1])
                requested.add(Resources(one.cpu * wanted[0], one.memory * wanted[0], one.gpu * wanted[0],
                                        one.pods * wanted[0]))
        found = "workloads"
    return Source(len(nodes), {k: {"nodes": v["nodes"], "allocatable": v["allocatable"].as_json()}
                               for k, v in sorted(pools.items())}, allocatable, requested, found)


def plan(documents: list[Document], *, scale: float = 1.0, keep_secrets: bool = False,
         export_format: str = "yaml") -> Plan:
    """What an import of these objects does, without a cluster: nodes kept at ``scale``, objects cleaned
    and in dependency order, the rest skipped with the reason. The same object twice (two files of one
    export) is imported once."""
    if not 0 < scale <= 1:
        raise ManifestError(f"scale must be more than 0 and at most 1, not {scale}", status=422)
    source_nodes: list[dict[str, Any]] = []
    node_failures: list[Entry] = []
    seen: set[str] = set()
    for doc in documents:
        if doc.kind != "Node" or doc.name in seen:
            continue
        seen.add(doc.name)
        problem = unusable_name(doc.name) or unusable_node(doc.obj)
        if problem:
            node_failures.append(Entry("v1", "Node", "", doc.name, "failed", problem))
        else:
            source_nodes.append(doc.obj)
    kept = scale_nodes(source_nodes, scale)
    kept_names = {n["metadata"]["name"] for n in kept}
    volumes = {d.name for d in documents if d.kind == "PersistentVolume" and skip_reason(d.obj) is None}
    entries: list[Entry] = []
    chosen: dict[tuple[str, str, str, str], tuple[Document, Entry]] = {}
    for doc in documents:
        if doc.kind == "Node":
            continue
        reason = skip_reason(doc.obj)
        if reason:
            entries.append(_entry(doc, "skip", reason))
            continue
        problem = unusable_name(doc.name) or unusable_name(doc.namespace or "", "metadata.namespace")
        if problem:
            entries.append(_entry(doc, "fail", problem))
            continue
        key = (doc.api_version.rpartition("/")[0], doc.kind, doc.namespace or "", doc.name)
        if key in chosen:
            entries.append(_entry(doc, "skip", "the same object appears earlier in the export"))
            continue
        cleaned = Document(clean(doc.obj, keep_secrets=keep_secrets, nodes=kept_names, volumes=volumes),
                           doc.index, doc.file)
        entry = _entry(cleaned, "apply", stage=stage_of(cleaned))
        chosen[key] = (cleaned, entry)
        entries.append(entry)
    rank = {name: i for i, (name, _) in enumerate(STAGES)}
    steps = sorted(chosen.values(), key=lambda step: (
        rank[stage_of(step[0])], manifests.RANK.get(step[0].kind, len(manifests.RANK)), step[0].index))
    dropped = sorted(n["metadata"]["name"] for n in source_nodes if n["metadata"]["name"] not in kept_names)
    return Plan(export_format, scale, [dict(n) for n in kept], steps, entries, dropped,
                source_totals(source_nodes, documents), node_failures)


def unusable_name(name: str, field: str = "metadata.name") -> str | None:
    """Why a name cannot go into the apiserver's URL as it is (the apiserver judges the rest, in its words)."""
    if len(name) > 253 or name in (".", "..") or any(c in name for c in "/\\?#%") or \
            any(c.isspace() or not c.isprintable() for c in name):
        return f"{field} {name[:80]!r} is not a valid Kubernetes name"
    return None


def unusable_node(node: Mapping[str, Any]) -> str | None:
    """Why a source node cannot be made a KWOK node: without its capacity KWOK would give it its own
    defaults (a thousand cores), not the source's shape."""
    status = node.get("status")
    capacity_ = status.get("capacity") if isinstance(status, dict) else None
    if not isinstance(capacity_, dict) or not capacity_:
        return "status.capacity is missing (export with kubectl get -o yaml or json, which includes status)"
    for field in ("capacity", "allocatable"):
        value = status.get(field) if isinstance(status, dict) else None
        if value is not None and not (isinstance(value, dict) and all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values())):
            return f"status.{field} must map resource names to quantities"
    spec = node.get("spec")
    taints = spec.get("taints") if isinstance(spec, dict) else None
    if taints is not None and not (isinstance(taints, list) and all(isinstance(t, dict) for t in taints)):
        return "spec.taints must be a list of taints"
    return None


# --------------------------------------------------------------------------- applying


@dataclasses.dataclass
class Report:
    """What an import did."""

    format: str
    scale: float
    dry_run: bool
    nodes: list[Entry]
    objects: list[Entry]
    source: Source
    dropped_nodes: list[str]
    elapsed: float = 0.0

    def counts(self) -> dict[str, int]:
        found = {k: 0 for k in ("created", "configured", "unchanged", "skipped", "failed")}
        for entry in (*self.nodes, *self.objects):
            found[entry.action] = found.get(entry.action, 0) + 1
        return found

    @property
    def failed_count(self) -> int:
        return self.counts()["failed"]

    def as_dict(self) -> dict[str, Any]:
        return {"status": "failed" if self.failed_count else "completed", "format": self.format,
                "scale": self.scale, "dry_run": self.dry_run, "counts": self.counts(),
                "failed_count": self.failed_count, "elapsed": round(self.elapsed, 3),
                "source": self.source.as_dict(), "dropped_nodes": self.dropped_nodes,
                "nodes": [e.as_dict() for e in self.nodes], "objects": [e.as_dict() for e in self.objects]}


Progress = Callable[[str, int, int], Awaitable[None] | None]


def _same_node(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    meta, want_meta = existing.get("metadata") or {}, wanted["metadata"]
    labels = meta.get("labels") or {}
    status, want_status = existing.get("status") or {}, wanted["status"]
    spec, want_spec = existing.get("spec") or {}, wanted["spec"]
    return (all(labels.get(k) == v for k, v in want_meta["labels"].items())
            and [{k: v for k, v in t.items() if k != "timeAdded"} for t in spec.get("taints") or []
                 # the node lifecycle's own (not-ready until KWOK makes it Ready) are not the import's
                 if not str(t.get("key", "")).startswith(TRANSIENT_TAINTS)] == want_spec.get("taints", [])
            and bool(spec.get("unschedulable")) == bool(want_spec.get("unschedulable"))
            and status.get("capacity") == want_status["capacity"]
            and status.get("allocatable") == want_status["allocatable"])


async def _apply_nodes(kube: Kube, the_plan: Plan, ip_range: str, dry_run: bool, sem: asyncio.Semaphore,
                       progress: Callable[[str], Awaitable[None]]) -> list[Entry]:
    if not the_plan.nodes:
        return []
    existing = {n["metadata"]["name"]: n for n in await kube.list("v1", "Node")}

    def internal_ip(node: Mapping[str, Any] | None) -> str | None:
        return next((str(a.get("address")) for a in ((node or {}).get("status") or {}).get("addresses") or []
                     if a.get("type") == "InternalIP"), None)

    # A node imported before keeps its address (a second import is unchanged); new ones get free ones.
    kept = {n["metadata"]["name"]: internal_ip(existing.get(n["metadata"]["name"])) for n in the_plan.nodes}
    taken = {internal_ip(n) for name, n in existing.items() if name not in kept} | set(kept.values())
    try:
        fresh = iter(addresses(ip_range, sum(1 for a in kept.values() if a is None), {a for a in taken if a}))
    except topology.TopologyError as exc:
        raise ManifestError(f"{exc} (K8SIM_NODE_IP_RANGE)", status=422) from None
    entries: list[Entry] = []

    async def one(source: Mapping[str, Any]) -> None:
        name = source["metadata"]["name"]
        current = existing.get(name)
        node = node_object(source, kept[name] or next(fresh))
        entry = Entry("v1", "Node", "", name, "created")
        entries.append(entry)
        if current is not None and _same_node(current, node):
            entry.action = "unchanged"
        else:
            entry.action = "configured" if current is not None else "created"
            if not dry_run:
                try:
                    async with sem:
                        await register_node(kube, node)
                except KubeError as exc:
                    if exc.reason == "Unavailable":
                        raise
                    entry.action, entry.reason = "failed", exc.message
        await progress("nodes")

    await asyncio.gather(*(one(n) for n in the_plan.nodes))
    order = {n["metadata"]["name"]: i for i, n in enumerate(the_plan.nodes)}
    return sorted(entries, key=lambda e: order[e.name])


async def _apply_object(kube: Kube, doc: Document, entry: Entry, dry_run: bool, absent: bool = False) -> None:
    """Server-side apply of one object, created, configured or unchanged (``absent``: known not to exist,
    its namespace being new)."""
    try:
        before = None if absent else await kube.get(doc.api_version, doc.kind, doc.name, doc.namespace)
        applied = await kube.apply(doc.obj, field_manager=FIELD_MANAGER, dry_run=dry_run)
    except UnknownKind:
        entry.action, entry.reason = "failed", await deploy.unknown_kind_reason(kube, doc.api_version, doc.kind)
        return
    except KubeError as exc:
        if exc.reason == "Unavailable":
            raise
        entry.action = "failed"
        entry.reason = "; ".join(p.message for p in deploy.kubeerror_problems(doc, exc))
        return
    if before is None:
        entry.action = "created"
    else:
        entry.action = "unchanged" if _content(before) == _content(applied) else "configured"


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object as the import sees it: without status (its controllers') and the apiserver's bookkeeping.
    An apply that owns no field (a Namespace with only a name) rewrites managedFields, and so the
    resourceVersion, every time: it changed nothing."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


async def apply(kube: Kube, the_plan: Plan, *, ip_range: str = "10.240.0.0/16", concurrency: int = 16,
                dry_run: bool = False, on_progress: Progress | None = None, crd_timeout: float = 60.0,
                record_source: bool = True) -> Report:
    """Register the plan's nodes, then apply its objects stage by stage (at most ``concurrency`` at
    once), CRDs served before the custom resources that need them. Idempotent: a second run reports
    unchanged. ``on_progress(stage, done, total)`` follows it."""
    started = time.monotonic()
    sem = asyncio.Semaphore(concurrency)
    total = len(the_plan.nodes) + len(the_plan.objects)
    done = 0

    async def progress(stage: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            result = on_progress(stage, done, total)
            if result is not None:
                await result

    node_entries = [*await _apply_nodes(kube, the_plan, ip_range, dry_run, sem, progress),
                    *(dataclasses.replace(e) for e in the_plan.node_failures)]
    namespaced = {key: info.namespaced for key, info in (await kube.discover()).items()}
    position = {id(e): i for i, e in enumerate(the_plan.entries)}
    done_as = {"skip": "skipped", "fail": "failed"}
    results: list[tuple[int, Entry]] = [(position[id(e)], dataclasses.replace(e, action=done_as[e.action]))
                                        for e in the_plan.entries if e.action in done_as]
    unborn: set[str | None] = set()  # namespaces the import creates, absent until it does
    if dry_run:
        for doc in the_plan.objects:
            if doc.kind == "Namespace" and await kube.get("v1", "Namespace", doc.name) is None:
                unborn.add(doc.name)
    for stage, _ in STAGES:
        steps = [(d, e) for d, e in the_plan.steps if e.stage == stage]
        if not steps:
            continue
        if stage == "custom":
            await kube.discover(refresh=True)  # kinds of the CRDs just applied

        async def one(doc: Document, planned: Entry, stage: str = stage) -> None:
            # Objects that name no namespace go to default, as kubectl apply puts them.
            doc = manifests.prepare([doc], tenant=None, default_namespace="default", namespaced=namespaced)[0]
            entry = dataclasses.replace(planned, namespace=doc.namespace or "")
            results.append((position[id(planned)], entry))
            absent = dry_run and doc.namespace in unborn
            if absent:
                # A dry run creates no namespace: the same checks, in one that exists, as a deploy's validation.
                doc = Document({**doc.obj, "metadata": {**doc.obj["metadata"], "namespace": "default"}}, doc.index)
            async with sem:
                await _apply_object(kube, doc, entry, dry_run, absent)
            await progress(stage)

        await asyncio.gather(*(one(d, e) for d, e in steps))
        crds = [d.name for d, _ in steps if d.kind == "CustomResourceDefinition"]
        if crds and not dry_run:
            await deploy.wait_established(kube, crds, crd_timeout)
    results.sort(key=lambda pair: pair[0])
    report = Report(the_plan.format, the_plan.scale, dry_run, node_entries, [e for _, e in results], the_plan.source,
                    the_plan.dropped_nodes, time.monotonic() - started)
    if record_source and not dry_run and any(e.action != "failed" for e in node_entries):
        await save_source(kube, report)
    return report


# --------------------------------------------------------------------------- the source, for /cluster/capacity


async def save_source(kube: Kube, report: Report) -> None:
    namespace, name = SOURCE_CONFIGMAP
    body = {**report.source.as_dict(), "format": report.format, "scale": report.scale,
            "imported_nodes": [e.name for e in report.nodes if e.action != "failed"],
            "imported_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    await kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                      "data": {"source.json": json.dumps(body, sort_keys=True)}}, field_manager=FIELD_MANAGER)


async def load_source(kube: Kube) -> dict[str, Any] | None:
    """The last import's source totals, or None when nothing was imported into this cluster."""
    namespace, name = SOURCE_CONFIGMAP
    found = await kube.get("v1", "ConfigMap", name, namespace)
    if not found:
        return None
    try:
        value = json.loads((found.get("data") or {}).get("source.json") or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def compare(source: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]],
            pods: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``source`` block of /cluster/capacity: the source's totals beside the imported nodes' now
    (allocatable of those nodes, requested by the pods bound to them)."""
    imported = set(source.get("imported_nodes") or [])
    allocatable, requested = Resources(), Resources()
    present = 0  # imported nodes still there (deleted ones, or nodes a scenario took, do not count)
    for node in nodes:
        if node["metadata"]["name"] in imported:
            present += 1
            allocatable.add(capacity.allocatable(node))
    for pod in pods:
        if capacity.holds(pod) and pod["spec"]["nodeName"] in imported:
            requested.add(pod_requests(pod.get("spec") or {}))
    return {**{k: v for k, v in source.items() if k != "imported_nodes"},
            "imported": {"nodes": present, "allocatable": allocatable.as_json(),
                         "requested": requested.as_json()}}


async def run(kube: Kube, source: str | Mapping[str, str], *, limits: Limits, scale: float = 1.0,
              keep_secrets: bool = False, dry_run: bool = False, ip_range: str = "10.240.0.0/16",
              concurrency: int = 16, on_progress: Progress | None = None) -> Report:
    """Read, plan and apply an export (what the command line and the API call)."""
    documents, export_format = read(source, limits)
    return await apply(kube, plan(documents, scale=scale, keep_secrets=keep_secrets, export_format=export_format),
                       ip_range=ip_range, concurrency=concurrency, dry_run=dry_run, on_progress=on_progress)
