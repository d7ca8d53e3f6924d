"""Capacity: requests as the scheduler counts them, pools, pending reasons, the nodes a plan needs."""

from __future__ import annotations

from typing import Any

import pytest

from k8sim import capacity, gpus, resources, topology

GIB = 1024**3


def node(name: str, pool: str, cpu: str = "32", memory: str = "128Gi", gpus: int = 0,
         taints: list[dict[str, str]] | None = None, ready: bool = True) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": memory, "pods": "110", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    labels = {"k8sim.io/pool": pool, **({"accelerator": "nvidia-t4"} if gpus else {})}
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints or []},
            "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": str(ready)}]}}


def pod(name: str, node_name: str | None, cpu: str = "1", memory: str = "1Gi", gpus: int = 0,
        phase: str = "Running", **spec: Any) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    body: dict[str, Any] = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory},
                                                                      "limits": limits}}], **spec}
    if node_name:
        body["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": body, "status": {"phase": phase}}


GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def test_requests_count_as_the_scheduler_counts_them() -> None:
    spec = {"containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                           {"resources": {"limits": {"cpu": "250m", "nvidia.com/gpu": "1"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}]}
    r = resources.pod_requests(spec)
    assert (r.cpu, r.memory, r.gpu, r.pods) == (2.0, GIB, 1.0, 1)  # init's 2 cores win; limits stand in


def test_pools_nodes_and_pending_reasons() -> None:
    nodes = [node("cpu-0", "cpu"), node("cpu-1", "cpu", ready=False), node("t4-0", "gpu-t4", gpus=4,
                                                                           taints=[GPU_TAINT])]
    waiting = pod("w", None, phase="Pending")
    waiting["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]
    pods = [pod("a", "cpu-0", cpu="4"), pod("b", "cpu-1"), pod("g", "t4-0", gpus=2),
            pod("done", "cpu-0", cpu="8", phase="Succeeded"), waiting, {**waiting, "metadata": {"name": "w2"}}]
    doc = capacity.document(nodes, pods, {"cpu-0": (3.5, 2 * GIB)})
    cpu = next(p for p in doc["pools"] if p["name"] == "cpu")
    assert cpu["nodes"] == 2 and cpu["ready_nodes"] == 1
    assert cpu["allocatable"]["cpu_cores"] == 64 and cpu["requested"]["cpu_cores"] == 5  # finished pods hold nothing
    assert cpu["requested_percent"]["cpu"] == pytest.approx(7.8, abs=0.1)
    assert doc["gpus"] == {"t4": {"allocatable": 4, "requested": 2}}
    assert doc["pending"] == [{"reason": "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                               "count": 2, "pods": ["/w2", "ns/w"]}] and doc["pending_pods"] == 2
    assert doc["pods_by_phase"] == {"Pending": 2, "Running": 3, "Succeeded": 1}
    rows = {n["name"]: n for n in doc["nodes"]}
    assert rows["cpu-0"]["used"] == {"cpu_cores": 3.5, "memory_bytes": 2 * GIB} and rows["cpu-1"]["used"] is None
    assert rows["t4-0"]["taints"] == ["nvidia.com/gpu=present:NoSchedule"]
    assert capacity.document(nodes, pods, None)["metrics_available"] is False


def test_extra_nodes_pack_unplaced_pods_onto_the_pools_that_can_take_them() -> None:
    nodes = [node("cpu-0", "cpu", cpu="32"), node("t4-0", "gpu-t4", cpu="48", gpus=4, taints=[GPU_TAINT])]
    gpu_spec = {"containers": [{"resources": {"requests": {"cpu": "4"}, "limits": {"nvidia.com/gpu": "1"}}}],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "nodeSelector": {"accelerator": "nvidia-t4"}}
    cpu_spec = {"containers": [{"resources": {"requests": {"cpu": "10"}}}]}
    huge = {"containers": [{"resources": {"requests": {"cpu": "100"}}}]}
    assert capacity.extra_nodes([gpu_spec] * 6 + [cpu_spec] * 7 + [huge], nodes) == {"gpu-t4": 2, "cpu": 3,
                                                                                      "none": 1}
    untolerated = {**gpu_spec, "tolerations": []}
    assert capacity.extra_nodes([untolerated], nodes) == {"none": 1}  # the taint keeps it off


def test_probe_pods_keep_what_the_scheduler_reads_and_nothing_it_would_wait_for() -> None:
    spec = {"containers": [{"name": "tts", "image": "x", "resources": {"requests": {"cpu": "2"}},
                            "volumeMounts": [{"name": "m", "mountPath": "/m"}]}],
            "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "models"}}],
            "serviceAccountName": "tts", "nodeSelector": {"accelerator": "nvidia-t4"},
            "tolerations": [GPU_TAINT]}
    probe = capacity.probe_pod("probe-0", "scratch", spec, "Deployment/tts")
    assert probe["spec"]["nodeSelector"] == spec["nodeSelector"] and probe["spec"]["tolerations"] == [GPU_TAINT]
    assert "volumes" not in probe["spec"] and "serviceAccountName" not in probe["spec"]
    assert probe["spec"]["containers"] == [{"name": "tts", "image": "registry.k8s.io/pause:3.10",
                                            "resources": {"requests": {"cpu": "2"}}}]
    assert probe["spec"]["priorityClassName"] == capacity.PROBE_PRIORITY
    assert capacity.workload_pods({"kind": "Deployment", "spec": {"replicas": 3, "template": {"spec": spec}}}) \
        == (3, spec)
    assert capacity.workload_pods({"kind": "DaemonSet", "spec": {"template": {"spec": spec}}}) is None


def test_probe_pods_keep_off_autoscaled_nodes_and_keep_the_workloads_own_terms() -> None:
    refuse = {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}
    bare = capacity.probe_pod("p", "scratch", {"containers": [{"name": "c"}]}, "Pod/p")
    assert bare["spec"]["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [refuse]}]}}}
    zone_a = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]}
    gpu = {"key": "accelerator", "operator": "In", "values": ["nvidia-t4"]}
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
               "nodeSelectorTerms": [{"matchExpressions": [zone_a]}, {"matchExpressions": [gpu]}]}},
           "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    spec = {"containers": [{"name": "c"}], "affinity": own}
    probe = capacity.probe_pod("p", "scratch", spec, "Pod/p")
    # Either term still places it (terms are ORed), each now also on a node no autoscaler made.
    assert probe["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [zone_a, refuse]}, {"matchExpressions": [gpu, refuse]}]}
    assert probe["spec"]["affinity"]["podAntiAffinity"] == own["podAntiAffinity"]
    assert spec["affinity"] == own and own["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0] == {"matchExpressions": [zone_a]}, "the manifest itself is left as it was"


@pytest.mark.parametrize(("text", "value"), [("250m", 0.25), ("1500000n", 0.0015), ("20u", 2e-5), ("2Gi", 2 * GIB),
                                             ("1k", 1000), (3, 3), ("bogus", None), (None, None),
                                             ("1e3", 1000), ("0.5Gi", GIB / 2), ("2Pi", 2 * 1024**5), ("", None)])
def test_quantities_in_every_unit_the_apis_write(text: Any, value: float | None) -> None:
    assert resources.quantity(text) == (pytest.approx(value) if value is not None else None)


# --------------------------------------------------------------------------- MIG and time-sliced devices

DEVICE_POOLS: list[dict[str, Any]] = [
    {"name": "mig-mixed", "count": 1, "instance_type": "p4d.24xlarge", "cpu": "96", "memory": "1152Gi",
     "gpu": {"type": "a100", "count": 2, "mig": {"strategy": "mixed", "layout": "all-balanced"}}},
    {"name": "mig-single", "count": 1, "instance_type": "p5.48xlarge", "cpu": "192", "memory": "2048Gi",
     "gpu": {"type": "h100", "count": 1, "mig": {"strategy": "single", "layout": "all-1g.10gb"}}},
    {"name": "ts-renamed", "count": 2, "instance_type": "g4dn.12xlarge", "cpu": "48", "memory": "192Gi",
     "gpu": {"type": "t4", "count": 2, "sharing": {"timeSlicing": {"replicas": 4, "renameByDefault": True}}}},
    {"name": "ts", "count": 1, "instance_type": "g4dn.12xlarge", "cpu": "48", "memory": "192Gi",
     "gpu": {"type": "t4", "count": 4, "sharing": {"timeSlicing": {"replicas": 2}}}},
    {"name": "cpu", "count": 1, "instance_type": "c6i.8xlarge", "cpu": "32", "memory": "128Gi"},
]


def device_pod(name: str, node_name: str, devices: dict[str, int], phase: str = "Running") -> dict[str, Any]:
    limits = {k: str(v) for k, v in devices.items()}
    return {"metadata": {"name": name, "namespace": "ns"}, "status": {"phase": phase},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {
                "requests": {"cpu": "1", "memory": "1Gi"}, "limits": limits}}]}}


def device_nodes() -> list[dict[str, Any]]:
    return topology.node_manifests(DEVICE_POOLS)


def test_mig_and_time_sliced_pools_count_physical_gpus_and_every_device_resource() -> None:
    pods = [device_pod("m1", "mig-mixed-0", {"nvidia.com/mig-1g.5gb": 1}),
            device_pod("m2", "mig-mixed-0", {"nvidia.com/mig-1g.5gb": 1, "nvidia.com/mig-3g.20gb": 1}),
            device_pod("gone", "mig-mixed-0", {"nvidia.com/mig-2g.10gb": 1}, phase="Succeeded"),
            device_pod("s1", "mig-single-0", {"nvidia.com/gpu": 2}),
            device_pod("r1", "ts-renamed-0", {"nvidia.com/gpu.shared": 1}),
            device_pod("r2", "ts-renamed-1", {"nvidia.com/gpu.shared": 2}),
            device_pod("t1", "ts-0", {"nvidia.com/gpu": 3})]
    doc = capacity.document(device_nodes(), pods, None)
    pools = {p["name"]: p for p in doc["pools"]}
    # A100-40GB x2, all-balanced, mixed: no nvidia.com/gpu at all, one resource per MIG profile.
    mixed = pools["mig-mixed"]
    assert mixed["physical_gpus"] == 2
    assert mixed["gpu_devices"] == {"nvidia.com/mig-1g.5gb": {"allocatable": 4, "requested": 2},
                                    "nvidia.com/mig-2g.10gb": {"allocatable": 2, "requested": 0},
                                    "nvidia.com/mig-3g.20gb": {"allocatable": 2, "requested": 1}}
    assert mixed["allocatable"]["gpus"] == 0 and mixed["requested"]["gpus"] == 0  # gpus keeps counting nvidia.com/gpu
    # H100 x1, all-1g.10gb, single: nvidia.com/gpu counts seven MIG devices of one GPU.
    single = pools["mig-single"]
    assert (single["physical_gpus"], single["gpu_devices"]) == (1, {"nvidia.com/gpu": {"allocatable": 7,
                                                                                        "requested": 2}})
    assert single["allocatable"]["gpus"] == 7 and single["requested_percent"]["gpus"] == pytest.approx(28.6)
    # T4 x2 per node, 4 replicas each, renamed: two nodes, 16 nvidia.com/gpu.shared over 4 GPUs.
    renamed = pools["ts-renamed"]
    assert (renamed["physical_gpus"], renamed["gpu_devices"]) == (4, {"nvidia.com/gpu.shared": {"allocatable": 16,
                                                                                               "requested": 3}})
    plain = pools["ts"]
    assert (plain["physical_gpus"], plain["gpu_devices"]) == (4, {"nvidia.com/gpu": {"allocatable": 8,
                                                                                      "requested": 3}})
    assert (pools["cpu"]["physical_gpus"], pools["cpu"]["gpu_devices"]) == (0, {})
    rows = {n["name"]: n for n in doc["nodes"]}
    assert {name: (row["physical_gpus"], row["gpu_sharing"]) for name, row in rows.items()} == {
        "mig-mixed-0": (2, "mig-mixed"), "mig-single-0": (1, "mig-single"), "ts-renamed-0": (2, "time-slicing"),
        "ts-renamed-1": (2, "time-slicing"), "ts-0": (4, "time-slicing"), "cpu-0": (0, None)}
    assert rows["ts-renamed-1"]["gpu_devices"] == {"nvidia.com/gpu.shared": {"allocatable": 8, "requested": 2}}
    # By GPU type: the old numbers stay nvidia.com/gpu's; the installed GPUs and devices beside them.
    assert doc["gpus"] == {"a100": {"allocatable": 0, "requested": 0}, "h100": {"allocatable": 7, "requested": 2},
                           "t4": {"allocatable": 8, "requested": 3}}
    assert doc["gpu_types"] == {
        "a100": {"nodes": 1, "physical_gpus": 2, "gpu_devices": mixed["gpu_devices"]},
        "h100": {"nodes": 1, "physical_gpus": 1, "gpu_devices": single["gpu_devices"]},
        "t4": {"nodes": 3, "physical_gpus": 8, "gpu_devices": {
            "nvidia.com/gpu": {"allocatable": 8, "requested": 3},
            "nvidia.com/gpu.shared": {"allocatable": 16, "requested": 3}}}}


def test_an_unhealthy_gpu_leaves_allocatable_not_the_installed_count() -> None:
    nodes = device_nodes()
    mixed = next(n for n in nodes if n["metadata"]["name"] == "mig-mixed-0")
    # The device plugin after an XID 79 on one of the two GPUs: its MIG devices are gone from allocatable.
    setup = gpus.setup(DEVICE_POOLS[0]["gpu"])
    mixed["status"]["allocatable"].update({k: str(v) for k, v in gpus.allocatable(setup, 1).items()})
    doc = capacity.document([mixed], [], None)
    (row,) = doc["nodes"]
    assert row["physical_gpus"] == 2
    assert row["gpu_devices"] == {"nvidia.com/mig-1g.5gb": {"allocatable": 2, "requested": 0},
                                  "nvidia.com/mig-2g.10gb": {"allocatable": 1, "requested": 0},
                                  "nvidia.com/mig-3g.20gb": {"allocatable": 1, "requested": 0}}
    mixed["status"]["allocatable"].update({k: "0" for k in setup.resources()})  # every GPU unhealthy
    (row,) = capacity.document([mixed], [], None)["nodes"]
    assert row["gpu_devices"]["nvidia.com/mig-3g.20gb"] == {"allocatable": 0, "requested": 0}


def test_a_gpu_node_of_a_model_the_simulator_does_not_know_counts_its_nvidia_com_gpu() -> None:
    found = node("x-0", "other", gpus=4)
    found["metadata"]["labels"]["accelerator"] = "nvidia-b200"
    (row,) = capacity.document([found], [pod("p", "x-0", gpus=1)], None)["nodes"]
    assert (row["physical_gpus"], row["gpu_sharing"], row["gpu_devices"]) == (
        4, None, {"nvidia.com/gpu": {"allocatable": 4, "requested": 1}})


def test_device_requests_count_as_the_scheduler_counts_them() -> None:
    spec = {"containers": [{"resources": {"limits": {"nvidia.com/mig-1g.5gb": "1", "cpu": "2"}}},
                           {"resources": {"requests": {"nvidia.com/mig-1g.5gb": "2"},
                                          "limits": {"nvidia.com/mig-1g.5gb": "2", "example.com/fpga": "1"}}}],
            "initContainers": [{"resources": {"limits": {"nvidia.com/mig-1g.5gb": "1", "nvidia.com/gpu.shared": "2"}}}]}
    # Containers summed (a limit stands in for the request), an init container's only where it is more;
    # other extended resources are not GPU devices.
    assert resources.device_requests(spec) == {"nvidia.com/mig-1g.5gb": 3, "nvidia.com/gpu.shared": 2}
    assert [r for r in ("nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-3g.20gb", "nvidia.com/gpu.product",
                        "example.com/gpu") if resources.is_gpu_device(r)] == ["nvidia.com/gpu", "nvidia.com/gpu.shared",
                                                                           "nvidia.com/mig-3g.20gb"]
