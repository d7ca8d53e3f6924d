"""k8sim.cost: OpenCost's price split, windows, the allocation and what Karpenter would add, with sums
computed by hand."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from k8sim import cost, instancetypes, lifecycle, topology
from k8sim.cost import Capacity, NodeSpan, PodSpan
from k8sim.settings import CLUSTER_DATA

GIB = 2**30
T0 = dt.datetime(2026, 7, 20, 10, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
C6I = Capacity(32, 128 * GIB, 0)
G4DN = Capacity(48, 192 * GIB, 4)


def test_split_is_opencosts_and_adds_up_to_the_total() -> None:
    price = cost.split(1.36, C6I)
    # ram = total / (cores * 0.031611/0.004237 + GiB): OpenCost's default weights
    assert price.ram == pytest.approx(1.36 / (32 * 0.031611 / 0.004237 + 128), rel=1e-12)
    assert price.cpu == pytest.approx(price.ram * 0.031611 / 0.004237, rel=1e-12)
    assert price.gpu == 0
    assert 32 * price.cpu + 128 * price.ram == pytest.approx(1.36, abs=1e-12)
    gpu = cost.split(3.912, G4DN)
    assert gpu.gpu == pytest.approx(gpu.ram * 0.95 / 0.004237, rel=1e-12)
    assert 48 * gpu.cpu + 192 * gpu.ram + 4 * gpu.gpu == pytest.approx(3.912, abs=1e-12)
    assert round(gpu.gpu, 6) == 0.606182  # most of a GPU node's price is its GPUs'


def test_price_table_spot_and_unknown_types() -> None:
    catalog = instancetypes.load_catalog()
    types = instancetypes.instance_types(topology.load_pools(CLUSTER_DATA / "nodepools.yaml"), catalog)
    table = cost.PriceTable.of(catalog, types)
    assert table.hourly("c6i.8xlarge", "on-demand") == 1.36
    assert table.hourly("c6i.8xlarge", None) == 1.36  # static nodes carry no capacity type: on-demand
    assert table.hourly("c6i.8xlarge", "spot") == pytest.approx(1.36 * 0.7)
    assert table.hourly("m5.nothing", "on-demand") is None
    assert table.resources["g4dn.12xlarge"] == G4DN
    # the cheapest type that holds one T4-sized pod with 1 GPU is the smallest g5
    assert table.cheapest_fit(Capacity(2, 8 * GIB, 1)) == ("g5.xlarge", 1.006)
    assert table.cheapest_fit(Capacity(2, 8 * GIB, 0)) == ("c6i.8xlarge", 1.36)
    assert table.cheapest_fit(Capacity(500, GIB, 0)) is None


def node(name: str, cap: Capacity = C6I, total: float = 1.36, start: dt.datetime | None = None,
         end: dt.datetime | None = None, pool: str = "cpu") -> NodeSpan:
    return NodeSpan(name, start, end, "c6i.8xlarge", "on-demand", pool, cap, cost.split(total, cap))


def test_allocation_sums_to_the_cent_with_idle_and_colliding_tenants() -> None:
    nodes = [node("n1"), node("n2", start=T0 + H)]  # n2 came an hour into the window
    pods = [
        PodSpan("t1-ns", "a", "t1", "n1", None, None, Capacity(4, 16 * GIB)),  # 1/8 of n1, whole window
        PodSpan("t10-ns", "b", "t10", "n1", T0 + H, None, Capacity(2, 8 * GIB)),  # 1/16 of n1, last hour
        PodSpan("t10-ns", "c", "t10", "n2", T0, T0 + 90 * dt.timedelta(minutes=1), Capacity(8, 32 * GIB)),
        PodSpan("other", "d", None, "n1", T0 - 3 * H, T0 - H, Capacity(4, 16 * GIB)),  # before the window
    ]
    got = cost.allocate(nodes, pods, T0, T0 + 2 * H, "namespace")
    assert list(got) == ["t1-ns", "t10-ns", "__idle__"]
    assert got["t1-ns"]["totalCost"] == 0.34  # 1.36 * 2 h / 8
    # b: 1.36 * 1 h / 16; c: n2 exists from T0+1h, the pod until T0+1.5h: 1.36 * 0.5 h / 4
    assert got["t10-ns"]["totalCost"] == pytest.approx(0.085 + 0.17, abs=1e-6)
    assert got["__idle__"]["totalCost"] == pytest.approx(1.36 * 3 - 0.34 - 0.255, abs=1e-6)
    assert sum(a["totalCost"] for a in got.values()) == pytest.approx(1.36 * 3, abs=0.005)
    assert got["t1-ns"]["cpuCoreHours"] == 8.0
    assert got["t1-ns"]["cpuCoreRequestAverage"] == 4.0
    assert got["t1-ns"]["ramByteHours"] == 32 * GIB
    assert got["t1-ns"]["window"] == {"start": "2026-07-20T10:00:00Z", "end": "2026-07-20T12:00:00Z"}
    assert got["t1-ns"]["cpuEfficiency"] is None  # no usage known
    by_tenant = cost.allocate(nodes, pods, T0, T0 + 2 * H, "tenant")
    assert by_tenant["t1"]["totalCost"] == 0.34
    assert by_tenant["t10"]["totalCost"] == pytest.approx(0.255, abs=1e-6)
    assert "__unallocated__" not in by_tenant
    by_node = cost.allocate(nodes, pods, T0, T0 + 2 * H, "node")
    assert by_node["n1"]["totalCost"] == pytest.approx(0.425, abs=1e-6)
    assert by_node["n2"]["totalCost"] == pytest.approx(0.17, abs=1e-6)


def test_gpu_cost_and_efficiency() -> None:
    gpu_node = NodeSpan("g1", None, None, "g4dn.12xlarge", "spot", "gpu-t4", G4DN,
                        cost.split(3.912 * 0.7, G4DN, spot=True))
    pods = [PodSpan("ai", "p", "t1", "g1", None, None, Capacity(12, 48 * GIB, 1), cpu_usage=3.0,
                    memory_usage=24 * GIB)]
    got = cost.allocate([gpu_node], pods, T0, T0 + H, "pool")
    entry = got["gpu-t4"]
    assert entry["totalCost"] == pytest.approx(3.912 * 0.7 / 4, abs=1e-6)  # a quarter of the node, one hour
    assert entry["gpuCost"] == pytest.approx(gpu_node.price.gpu, abs=1e-6)  # type: ignore[union-attr]
    assert entry["gpuHours"] == 1.0
    assert entry["cpuEfficiency"] == 0.25
    assert entry["ramEfficiency"] == 0.5
    weighted = (0.25 * entry["cpuCost"] + 0.5 * entry["ramCost"]) / (entry["cpuCost"] + entry["ramCost"])
    assert entry["totalEfficiency"] == pytest.approx(weighted, abs=1e-6)
    assert got["__idle__"]["totalCost"] == pytest.approx(3.912 * 0.7 * 3 / 4, abs=1e-6)


def test_unpriced_node_costs_nothing() -> None:
    bare = NodeSpan("x", None, None, "m5.nothing", "on-demand", "x", C6I, None)
    assert cost.allocate([bare], [PodSpan("a", "a", None, "x", None, None, C6I)], T0, T0 + H, "namespace") == {}


@pytest.mark.parametrize(("window", "start", "end"), [
    ("1h", T0 - H, T0), ("24h", T0 - 24 * H, T0), ("7d", T0 - 168 * H, T0), ("30m", T0 - H / 2, T0),
    ("today", T0.replace(hour=0), T0), ("yesterday", T0.replace(hour=0) - 24 * H, T0.replace(hour=0)),
    ("month", T0.replace(day=1, hour=0), T0),
    ("2026-07-20T08:00:00Z,2026-07-20T09:30:00Z", T0 - 2 * H, T0 - H / 2),
    ("1784527200,1784534400", dt.datetime.fromtimestamp(1784527200, dt.UTC),
     dt.datetime.fromtimestamp(1784534400, dt.UTC)),
])
def test_windows(window: str, start: dt.datetime, end: dt.datetime) -> None:
    assert cost.parse_window(window, T0) == (start, end)


@pytest.mark.parametrize("window", ["", "banana", "0h", "-1h", "1y", "99999999999d", "9" * 400 + "w",
                                    "2026-07-20T08:00:00,2026-07-20T09:00:00",
                                    "2026-07-20T09:00:00Z,2026-07-20T08:00:00Z", "a,b,c"])
def test_bad_windows_name_themselves(window: str) -> None:
    with pytest.raises(cost.WindowError, match="window"):
        cost.parse_window(window, T0)


def test_karpenter_nodes_picks_the_cheapest_fitting_type_and_packs() -> None:
    catalog = instancetypes.load_catalog()
    types = instancetypes.instance_types(topology.load_pools(CLUSTER_DATA / "nodepools.yaml"), catalog)
    table = cost.PriceTable.of(catalog, types)
    pods = [Capacity(2, 8 * GIB, 1)] * 3 + [Capacity(8, 16 * GIB)] * 5 + [Capacity(1000, GIB)]
    counts, monthly, none = cost.karpenter_nodes(pods, table)
    # three 1-GPU pods: three g5.xlarge (1 GPU each); five 8-core pods: 40 cores, two c6i.8xlarge
    assert counts == {"c6i.8xlarge": 2, "g5.xlarge": 3}
    assert monthly == round((3 * 1.006 + 2 * 1.36) * 730, 2)
    assert none == 1


# --------------------------------------------------------------------------- the engine's metrics


def _node(name: str, itype: str, capacity: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": itype,
                                                  "topology.kubernetes.io/region": "us-east-1", **(labels or {})}},
            "spec": {}, "status": {"capacity": capacity}}


def test_engine_exports_opencosts_names_and_labels() -> None:
    from k8sim_engine.collector import State
    from k8sim_engine.cost import CostCollector
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    catalog = instancetypes.load_catalog()
    table = cost.PriceTable.of(catalog, instancetypes.instance_types(
        topology.load_pools(CLUSTER_DATA / "nodepools.yaml"), catalog))
    nodes = [_node("cpu-0", "c6i.8xlarge", {"cpu": "32", "memory": "128Gi"}),
             _node("kwok-gpu", "g4dn.12xlarge", {"cpu": "48", "memory": "192Gi", "nvidia.com/gpu": "4"},
                   {"karpenter.sh/capacity-type": "spot"}),
             _node("odd", "m5.nothing", {"cpu": "2", "memory": "8Gi"})]
    volumes = [{"metadata": {"name": "pvc-1"}, "spec": {"capacity": {"storage": "10Gi"}}},
               {"metadata": {"name": "pvc-2"}, "spec": {"csi": {"volumeHandle": "vol-0abc"}}}]
    pod = {"metadata": {"name": "web-1", "namespace": "t1"}, "status": {"phase": "Running"},
           "spec": {"nodeName": "kwok-gpu", "containers": [
               {"name": "app", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                             "limits": {"nvidia.com/gpu": "1"}}},
               {"name": "sidecar", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}

    class Cache:
        synced = True

        def items(self, kind: str) -> list[dict[str, Any]]:
            return {"Node": nodes, "PersistentVolume": volumes}.get(kind, [])

    class Ref:
        state = State()
        cache = Cache()

    Ref.state.pods = [pod]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CostCollector(Ref(), table))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    gpu = (("instance", "kwok-gpu"), ("instance_type", "g4dn.12xlarge"), ("node", "kwok-gpu"),
           ("provider_id", "kwok-gpu"), ("region", "us-east-1"))
    assert samples[("node_total_hourly_cost", gpu)] == pytest.approx(3.912 * 0.7)
    assert samples[("kubecost_node_is_spot", gpu)] == 1.0
    assert samples[("node_gpu_count", gpu)] == 4.0
    assert samples[("node_gpu_hourly_cost", gpu)] == pytest.approx(cost.split(3.912 * 0.7, G4DN).gpu)
    cpu0 = (("instance", "cpu-0"), ("instance_type", "c6i.8xlarge"), ("node", "cpu-0"),
            ("provider_id", "cpu-0"), ("region", "us-east-1"))
    assert samples[("kubecost_node_is_spot", cpu0)] == 0.0
    assert samples[("node_ram_hourly_cost", cpu0)] == pytest.approx(cost.split(1.36, C6I).ram)
    assert not any(labels and dict(labels).get("node") == "odd" for _, labels in samples)  # no price: no series
    app = (("container", "app"), ("instance", "kwok-gpu"), ("namespace", "t1"), ("node", "kwok-gpu"), ("pod", "web-1"))
    assert samples[("container_cpu_allocation", app)] == 0.5
    assert samples[("container_memory_allocation_bytes", app)] == GIB
    assert samples[("container_gpu_allocation", app)] == 1.0
    assert {labels: v for (name, labels), v in samples.items() if name == "pv_hourly_cost"} == {
        (("persistentvolume", "pvc-1"), ("provider_id", "pvc-1"), ("volumename", "pvc-1")): 0.00005479452,
        (("persistentvolume", "pvc-2"), ("provider_id", "vol-0abc"), ("volumename", "pvc-2")): 0.00005479452}


# --------------------------------------------------------------------------- the route


class CostKube:
    def __init__(self, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]):
        self.objects = {"Node": nodes, "Pod": pods}
        self.metrics: dict[str, Any] | None = None

    async def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        return self.objects[kind]

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        from k8sim.kube import KubeError
        if self.metrics is None or path != "/apis/metrics.k8s.io/v1beta1/pods":
            raise KubeError(404, "NotFound", "the metrics API is not served here")
        return self.metrics


class NoConn:
    """The routes' connections reach only the store functions the test replaces."""

    async def __aenter__(self) -> NoConn:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None


class Pool:
    def acquire(self) -> NoConn:
        return NoConn()


@pytest.fixture
def cost_client(monkeypatch: pytest.MonkeyPatch) -> Any:
    from k8sim_api import deps
    from k8sim_api.core.config import ApiSettings
    from k8sim_api.main import create_app
    from starlette.testclient import TestClient

    from k8sim import store

    now = dt.datetime.now(dt.UTC)
    created = now - 48 * H
    nodes = [_node("cpu-0", "c6i.8xlarge", {"cpu": "32", "memory": "128Gi"}, {"k8sim.io/pool": "cpu"})]
    pods = [{"metadata": {"name": n, "namespace": ns, "uid": uid}, "status": {"phase": "Running"},
             "spec": {"nodeName": "cpu-0", "containers": [{"name": "c", "resources": {
                 "requests": {"cpu": "4", "memory": "16Gi"}}}]}}
            for n, ns, uid in (("a", "ns-t1", "u1"), ("b", "ns-t10", "u2"))]

    async def node_spans(conn: Any, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        return [{"uid": "n", "name": "cpu-0", "labels": nodes[0]["metadata"]["labels"], "created_at": created,
                 "deleted_at": None}]

    async def pod_spans(conn: Any, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        return [{"uid": uid, "namespace": ns, "name": n, "tenant": t, "owner_uid": None, "node": "cpu-0",
                 "bound_at": created, "ended_at": None, "deleted_at": None}
                for uid, ns, n, t in (("u1", "ns-t1", "a", "t1"), ("u2", "ns-t10", "b", "t10"),
                                      ("gone", "ns-t1", "old", "t1"))]

    monkeypatch.setattr(store, "node_spans", node_spans)
    monkeypatch.setattr(store, "pod_spans", pod_spans)
    app = create_app(ApiSettings())
    kube = CostKube(nodes, pods)

    async def kube_dep() -> CostKube:
        return kube

    async def pool_dep() -> Pool:
        return Pool()

    app.dependency_overrides[deps.kube_dep] = kube_dep
    app.dependency_overrides[deps.pool_dep] = pool_dep
    client = TestClient(app, raise_server_exceptions=False)
    client.kube = kube
    return client


def test_cost_route_answers_opencosts_shape(cost_client: Any) -> None:
    # a fixed window before now, after the node and pods came: they ran through all of it
    base = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - 10 * H
    start, end = cost.iso(base), cost.iso(base + 2 * H)
    answer = cost_client.get("/cluster/cost", params={"window": f"{start},{end}", "aggregate": "namespace"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == 200
    data = body["data"][0]
    assert sorted(data) == ["__idle__", "ns-t1", "ns-t10"]
    assert data["ns-t1"]["totalCost"] == 0.34  # 1/8 of a $1.36/h node for 2 h
    assert data["ns-t10"]["totalCost"] == 0.34
    assert data["__idle__"]["totalCost"] == pytest.approx(2.72 - 0.68, abs=1e-6)
    assert data["ns-t1"]["window"] == {"start": start, "end": end}
    assert body["pods_without_requests"] == 1  # "old": gone, no live sibling
    assert body["hourly_cost_now"] == 1.36
    assert body["monthly_projection"] == round(1.36 * 730, 2)
    tenants = cost_client.get("/cluster/cost", params={"window": f"{start},{end}", "aggregate": "tenant"}).json()
    assert {k: v["totalCost"] for k, v in tenants["data"][0].items() if k != "__idle__"} == {"t1": 0.34, "t10": 0.34}


@pytest.mark.parametrize(("params", "needle"), [
    ({"window": "fortnight"}, "window 'fortnight' does not parse"),
    ({"window": "2026-07-20T10:00:00Z,2026-07-20T08:00:00Z"}, "is empty"),
    ({"aggregate": "label"}, "aggregate"),
])
def test_cost_route_refuses_bad_input_with_422(cost_client: Any, params: dict[str, str], needle: str) -> None:
    answer = cost_client.get("/cluster/cost", params=params)
    assert answer.status_code == 422
    assert needle in answer.json()["message"]


def test_karpenter_nodes_follow_the_pods_node_selector() -> None:
    catalog = instancetypes.load_catalog()
    table = cost.PriceTable.of(catalog, instancetypes.instance_types(
        topology.load_pools(CLUSTER_DATA / "nodepools.yaml"), catalog))
    t4 = {"accelerator": "nvidia-t4"}
    counts, monthly, none = cost.karpenter_nodes([(Capacity(2, 8 * GIB, 1), t4)] * 5, table)
    assert counts == {"g4dn.12xlarge": 2}  # four T4s a node; a g5 is cheaper but has no T4
    assert monthly == round(2 * 3.912 * 730, 2)
    assert none == 0
    only = {"node.kubernetes.io/instance-type": "c6i.8xlarge"}
    assert cost.karpenter_nodes([(Capacity(40, GIB), only)], table) == ({}, 0.0, 1)


def test_cost_route_reads_usage_in_nanocores(cost_client: Any) -> None:
    # metrics.k8s.io writes cpu in nanocores and memory in Ki: the efficiency follows from them
    cost_client.kube.metrics = {"items": [{"metadata": {"namespace": "ns-t1", "name": "a"}, "containers": [
        {"name": "c", "usage": {"cpu": "1000000000n", "memory": "4194304Ki"}}]}]}
    body = cost_client.get("/cluster/cost", params={"window": "1h"}).json()
    mine = body["data"][0]["ns-t1"]
    assert mine["cpuEfficiency"] == 0.25  # 1 core used of 4 requested
    assert mine["ramEfficiency"] == 0.25  # 4 GiB of 16
    assert mine["cpuCoreUsageAverage"] == 1.0
    assert body["data"][0]["ns-t10"]["cpuEfficiency"] is None  # no usage reported for b


def test_a_gone_pod_is_charged_the_requests_its_history_recorded() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "old", "namespace": "ns-t1", "uid": "gone"},
           "spec": {"nodeName": "cpu-0", "containers": [
               {"name": "a", "resources": {"requests": {"cpu": "1500m", "memory": "2Gi"}}},
               {"name": "b", "resources": {"limits": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}}}]},
           "status": {"phase": "Running"}}
    state = lifecycle.summarise(pod)
    assert state is not None and state.requests == (2.0, 3 * 2**30, 1.0)
    recorded = lifecycle.State.from_dict(json.loads(json.dumps(state.as_dict())))  # as stored in PostgreSQL
    assert recorded == state
    row = {"uid": "gone", "namespace": "ns-t1", "name": "old", "tenant": "t1", "owner_uid": "rs-1", "node": "cpu-0",
           "requests": list(recorded.requests or ()), "bound_at": None, "ended_at": None, "deleted_at": None}
    spans, unknown = cost.pod_spans([row, {**row, "uid": "older", "requests": None}], live=[])
    assert unknown == 1  # recorded before the history held requests, and no live sibling
    assert [s.requests for s in spans] == [cost.Capacity(2.0, 3 * 2**30, 1.0)]


# --------------------------------------------------------------------------- MIG and time-sliced GPUs

#: One node each: A100 x2 MIG mixed all-balanced (1g.5gb x2, 2g.10gb, 3g.20gb per GPU), H100 x1 MIG
#: single all-1g.10gb (nvidia.com/gpu: 7), T4 x2 time-sliced 4 ways (nvidia.com/gpu: 8), and the same
#: renamed (nvidia.com/gpu.shared: 8).
SHAPED_POOLS = [
    {"name": "mig-mixed", "count": 1, "instance_type": "p4d.24xlarge", "cpu": "96", "memory": "1152Gi",
     "gpu": {"type": "a100", "count": 2, "mig": {"strategy": "mixed", "layout": "all-balanced"}}},
    {"name": "mig-single", "count": 1, "instance_type": "p5.48xlarge", "cpu": "192", "memory": "2048Gi",
     "gpu": {"type": "h100", "count": 1, "mig": {"strategy": "single", "layout": "all-1g.10gb"}}},
    {"name": "ts", "count": 1, "instance_type": "g4dn.12xlarge", "cpu": "48", "memory": "192Gi",
     "gpu": {"type": "t4", "count": 2, "sharing": {"timeSlicing": {"replicas": 4}}}},
    {"name": "ts-renamed", "count": 1, "instance_type": "g4dn.12xlarge", "cpu": "48", "memory": "192Gi",
     "gpu": {"type": "t4", "count": 2, "sharing": {"timeSlicing": {"replicas": 4, "renameByDefault": True}}}},
]
P4D = Capacity(96, 1152 * GIB, 2)
P5 = Capacity(192, 2048 * GIB, 1)
T4X2 = Capacity(48, 192 * GIB, 2)


def _shaped() -> tuple[cost.PriceTable, dict[str, dict[str, Any]]]:
    catalog = instancetypes.load_catalog()
    table = cost.PriceTable.of(catalog, instancetypes.instance_types(topology.load_pools(
        CLUSTER_DATA / "nodepools.yaml"), catalog))
    return table, {n["metadata"]["name"]: n for n in topology.node_manifests(SHAPED_POOLS)}


def _gpu_pod(name: str, node: str, resource: str, count: int = 1) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ai", "uid": name},
            "spec": {"nodeName": node, "containers": [{"name": "server", "resources": {
                "requests": {"cpu": "1", "memory": "4Gi"}, "limits": {resource: str(count)}}}]},
            "status": {"phase": "Running"}}


def test_shaped_nodes_are_priced_by_their_physical_gpus() -> None:
    table, nodes = _shaped()
    facts = {name: cost.node_facts(node, table) for name, node in nodes.items()}
    assert {name: f[3].gpu for name, f in facts.items()} == {
        "mig-mixed-0": 2, "mig-single-0": 1, "ts-0": 2, "ts-renamed-0": 2}  # not 0, 7, 8 and 0
    assert facts["mig-mixed-0"][4] == cost.split(21.957642, P4D)
    assert facts["mig-single-0"][4] == cost.split(55.04, P5)
    assert facts["ts-0"][4] == facts["ts-renamed-0"][4] == cost.split(3.912, T4X2)
    price = facts["mig-mixed-0"][4]
    assert price is not None and price.gpu > 0  # a MIG node's GPUs have a price, not spread over CPU and RAM
    assert 96 * price.cpu + 1152 * price.ram + 2 * price.gpu == pytest.approx(21.957642, abs=1e-9)


@pytest.mark.parametrize(("node", "resource", "count", "share"), [
    ("mig-mixed-0", "nvidia.com/mig-1g.5gb", 1, 1 / 7),  # one compute slice of an A100's seven
    ("mig-mixed-0", "nvidia.com/mig-1g.5gb", 2, 2 / 7),
    ("mig-mixed-0", "nvidia.com/mig-3g.20gb", 1, 3 / 7),
    ("mig-single-0", "nvidia.com/gpu", 1, 1 / 7),  # single: nvidia.com/gpu is a 1g.10gb device
    ("ts-0", "nvidia.com/gpu", 1, 1 / 4),  # a replica of a GPU shared four ways
    ("ts-renamed-0", "nvidia.com/gpu.shared", 2, 2 / 4),
    ("cpu-any", "nvidia.com/mig-2g.10gb", 1, 2 / 7),  # a node whose GPUs are not known: the profile's name
])
def test_a_pods_gpu_share_is_the_whole_gpus_its_devices_hold(node: str, resource: str, count: int,
                                                             share: float) -> None:
    table, nodes = _shaped()
    setup = cost.node_setup(nodes[node], table) if node in nodes else None
    pod = _gpu_pod("p", node, resource, count)
    r = lifecycle.summarise(pod)
    assert r is not None and r.requests is not None
    assert cost.gpu_share(setup, cost.recorded_capacity(r.requests)) == pytest.approx(share, abs=1e-12)


def test_mig_and_time_sliced_pods_are_billed_their_gpu_share_from_history_and_add_up_to_the_cent() -> None:
    table, nodes = _shaped()
    # Gone nodes: the history has their labels (GFD's) and no live Node; their pods are gone too.
    recorded_nodes = [{"name": name, "labels": node["metadata"]["labels"], "created_at": T0 - H,
                       "deleted_at": T0 + 3 * H} for name, node in nodes.items()]
    spans = cost.node_spans(recorded_nodes, [], table)
    assert {s.name: s.capacity.gpu for s in spans} == {"mig-mixed-0": 2, "mig-single-0": 1, "ts-0": 2,
                                                       "ts-renamed-0": 2}
    pods = [_gpu_pod("slice", "mig-mixed-0", "nvidia.com/mig-1g.5gb"),
            _gpu_pod("big-slice", "mig-mixed-0", "nvidia.com/mig-3g.20gb"),
            _gpu_pod("single", "mig-single-0", "nvidia.com/gpu"),
            _gpu_pod("replica", "ts-0", "nvidia.com/gpu"),
            _gpu_pod("renamed", "ts-renamed-0", "nvidia.com/gpu.shared", 2)]
    rows = []
    for pod in pods:
        state = lifecycle.summarise(pod)
        assert state is not None
        stored = lifecycle.State.from_dict(json.loads(json.dumps(state.as_dict())))  # as PostgreSQL holds it
        assert stored == state
        rows.append({"uid": pod["metadata"]["uid"], "namespace": "ai", "name": pod["metadata"]["name"],
                     "tenant": "t1", "owner_uid": None, "node": pod["spec"]["nodeName"],
                     "requests": json.loads(json.dumps(stored.requests)), "bound_at": T0, "ended_at": T0 + 2 * H,
                     "deleted_at": None})
    # an old row, recorded as (cores, bytes, GPUs) before the devices were: it still bills
    rows.append({**rows[3], "uid": "old", "name": "old", "requests": [1.0, 4.0 * GIB, 1.0]})
    assert rows[0]["requests"] == [1.0, 4.0 * GIB, 0.0, [["nvidia.com/mig-1g.5gb", 1.0]]]
    pod_spans, unknown = cost.pod_spans(rows, live=[])
    assert unknown == 0
    got = cost.allocate(spans, pod_spans, T0, T0 + 2 * H, "node")
    mixed, single, ts = (cost.split(21.957642, P4D), cost.split(55.04, P5), cost.split(3.912, T4X2))
    assert got["mig-mixed-0"]["gpuHours"] == pytest.approx(2 * (1 / 7 + 3 / 7), abs=1e-6)
    assert got["mig-mixed-0"]["gpuCost"] == pytest.approx(2 * (4 / 7) * mixed.gpu, abs=1e-6)
    assert got["mig-single-0"]["gpuCost"] == pytest.approx(2 / 7 * single.gpu, abs=1e-6)
    assert got["ts-0"]["gpuHours"] == pytest.approx(2 * 2 / 4, abs=1e-6)  # "replica" and the old row
    assert got["ts-0"]["gpuCost"] == pytest.approx(2 * 2 / 4 * ts.gpu, abs=1e-6)
    assert got["ts-renamed-0"]["gpuCost"] == pytest.approx(2 * 2 / 4 * ts.gpu, abs=1e-6)
    assert got["ts-renamed-0"]["cpuCost"] == pytest.approx(2 * ts.cpu, abs=1e-6)
    idle = got["__idle__"]
    assert idle["gpuHours"] == pytest.approx(2 * (2 + 1 + 2 + 2) - 2 * (4 / 7 + 1 / 7 + 2 / 4 + 2 / 4), abs=1e-6)
    nodes_cost = 2 * (21.957642 + 55.04 + 3.912 + 3.912)
    assert round(sum(a["totalCost"] for a in got.values()), 2) == round(nodes_cost, 2)
    by_ns = cost.allocate(spans, pod_spans, T0, T0 + 2 * H, "namespace")
    assert round(by_ns["ai"]["totalCost"] + by_ns["__idle__"]["totalCost"], 2) == round(nodes_cost, 2)
    assert by_ns["ai"]["gpuCost"] == pytest.approx(sum(got[n]["gpuCost"] for n in nodes), abs=1e-5)


def test_engine_counts_physical_gpus_and_allocates_gpu_shares() -> None:
    from k8sim_engine.cost import container_families, node_families

    from k8sim import gpus

    table, nodes = _shaped()
    samples = {(s.name, s.labels["node"]): s.value for f in node_families(list(nodes.values()), table)
               for s in f.samples}
    assert {n: samples[("node_gpu_count", n)] for n in nodes} == {
        "mig-mixed-0": 2, "mig-single-0": 1, "ts-0": 2, "ts-renamed-0": 2}
    assert samples[("node_gpu_hourly_cost", "ts-0")] == pytest.approx(cost.split(3.912, T4X2).gpu)
    pods = [_gpu_pod("slice", "mig-mixed-0", "nvidia.com/mig-3g.20gb"), _gpu_pod("replica", "ts-0", "nvidia.com/gpu"),
            _gpu_pod("renamed", "ts-renamed-0", "nvidia.com/gpu.shared", 2)]
    allocation = {s.labels["pod"]: s.value for f in container_families(pods, gpus.inventory(nodes.values()))
                  if f.name == "container_gpu_allocation" for s in f.samples}
    assert allocation == pytest.approx({"slice": 3 / 7, "replica": 1 / 4, "renamed": 2 / 4})


def test_what_if_packs_mig_and_shared_gpu_requests_by_device() -> None:
    catalog = instancetypes.load_catalog()
    plain = cost.PriceTable.of(catalog, instancetypes.instance_types(topology.load_pools(
        CLUSTER_DATA / "nodepools.yaml"), catalog))
    mig = Capacity(1, 4 * GIB, 0, (("nvidia.com/mig-1g.5gb", 1.0),))
    # No type of the default catalog offers a MIG device: Karpenter could launch nothing for it (the
    # old packing took it for GPU-free and put it on a c6i.8xlarge).
    assert cost.karpenter_nodes([mig], plain) == ({}, 0.0, 1)
    pools = [*topology.load_pools(CLUSTER_DATA / "nodepools.yaml"), *SHAPED_POOLS]
    shaped = cost.PriceTable.of(catalog, instancetypes.instance_types(pools, catalog))
    variant = "p4d.24xlarge-mig-mixed-all-balanced"
    assert shaped.devices[variant] == {"nvidia.com/mig-1g.5gb": 4, "nvidia.com/mig-2g.10gb": 2,
                                       "nvidia.com/mig-3g.20gb": 2}
    # five 1g.5gb pods: four slices a node, so two nodes of the only type that has them
    counts, monthly, none = cost.karpenter_nodes([mig] * 5, shaped)
    assert (counts, monthly, none) == ({variant: 2}, round(2 * 21.957642 * 730, 2), 0)
    shared = Capacity(1, 4 * GIB, 0, (("nvidia.com/gpu.shared", 1.0),))
    renamed = "g4dn.12xlarge-time-sliced-4-renamed"
    assert cost.karpenter_nodes([shared] * 9, shaped) == ({renamed: 2}, round(2 * 3.912 * 730, 2), 0)
    # GPU-free pods stay off every GPU type, shaped ones included
    assert cost.karpenter_nodes([Capacity(1, GIB)], shaped)[0] == {"c6i.8xlarge": 1}


def test_what_if_pool_shaped_nodes_count_mig_requests() -> None:
    from k8sim import capacity

    nodes = topology.node_manifests([*topology.load_pools(CLUSTER_DATA / "nodepools.yaml"), *SHAPED_POOLS])
    spec = {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/mig-1g.5gb": "1"}}}]}
    # four 1g.5gb devices a mixed node: six pods need two; no other pool has the device
    assert capacity.extra_nodes([spec] * 6, nodes) == {"mig-mixed": 2}
