"""The simulated cluster itself: nodes, scheduling, pod lifecycle, validation, no downloads."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8sim import topology
from k8sim.local import build, cluster, layout, processes
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl, eventually

pytestmark = pytest.mark.integration


def test_every_configured_node_is_ready_with_its_labels_taints_and_capacity(
    kubectl: Kubectl, settings: ClusterSettings
) -> None:
    expected = {n["metadata"]["name"]: n for n in topology.node_manifests(topology.load_pools(settings.nodepools))}
    nodes = {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}
    assert set(expected) <= set(nodes)
    gpu_types = set()
    for name, want in expected.items():
        node = nodes[name]
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", name
        assert node["spec"]["providerID"] == f"kwok://{name}"
        for resource, quantity in want["status"]["capacity"].items():
            assert node["status"]["capacity"][resource] == quantity, (name, resource)
        if "nvidia.com/gpu" in want["status"]["capacity"]:
            accel = node["metadata"]["labels"]["accelerator"]
            assert accel.startswith("nvidia-")
            gpu_types.add(accel.removeprefix("nvidia-"))
            assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
        else:
            assert "accelerator" not in node["metadata"]["labels"]
            assert not node["spec"].get("taints")
    assert gpu_types == {"t4", "v100", "l40s", "a100"}


def deployment(name: str, replicas: int, **pod_spec: Any) -> str:
    container = {"name": "app", "image": "registry.example/app:1.0",
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
    container.update(pod_spec.pop("container", {}))
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [container], **pod_spec}}},
    })


def test_hundred_replica_deployment_becomes_available(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("web", 100))
    kubectl("wait", "-n", namespace, "deployment/web", "--for=jsonpath={.status.availableReplicas}=100",
            "--timeout=180s")
    pods = kubectl.json("get", "pods", "-n", namespace)["items"]
    assert len(pods) == 100
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert all(p["spec"]["nodeName"].startswith("cpu-") for p in pods), "CPU pods must avoid tainted GPU nodes"


def gpu_pod(name: str, gpu_type: str, gpus: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"accelerator": f"nvidia-{gpu_type}"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                             "effect": "NoSchedule"}],
            "containers": [{"name": "tts", "image": "ecp-ai/tts-server:1.0",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
    })


def test_gpu_pod_lands_on_matching_gpu_node(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=gpu_pod("tts", "l40s", 1))
    kubectl("wait", "-n", namespace, "pod/tts", "--for=condition=Ready", "--timeout=60s")
    pod = kubectl.json("get", "pod", "tts", "-n", namespace)
    node = kubectl.json("get", "node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"]["accelerator"] == "nvidia-l40s"
    assert pod["status"]["phase"] == "Running"


def test_pod_asking_more_gpus_than_any_node_stays_pending_unschedulable(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=gpu_pod("greedy", "a100", 64))

    def unschedulable() -> bool:
        pod = kubectl.json("get", "pod", "greedy", "-n", namespace)
        conds = {c["type"]: c for c in pod["status"].get("conditions", [])}
        return conds.get("PodScheduled", {}).get("reason") == "Unschedulable"

    eventually(unschedulable, 60, "PodScheduled=False/Unschedulable")
    pod = kubectl.json("get", "pod", "greedy", "-n", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert "nvidia.com/gpu" in {c["type"]: c for c in pod["status"]["conditions"]}["PodScheduled"]["message"]


def test_job_completes_and_deleted_pods_go_away(kubectl: Kubectl, namespace: str) -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
           "spec": {"completions": 3, "parallelism": 3, "template": {"spec": {
               "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(job))
    kubectl("wait", "-n", namespace, "job/batch", "--for=condition=Complete", "--timeout=120s")
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("gone", 3))
    kubectl("wait", "-n", namespace, "deployment/gone", "--for=condition=Available", "--timeout=60s")
    kubectl("delete", "-n", namespace, "deployment/gone")
    eventually(lambda: not kubectl.json("get", "pods", "-n", namespace, "-l", "app=gone")["items"], 60,
             "the deleted deployment's pods to vanish")


def test_apiserver_rejects_an_invalid_object(kubectl: Kubectl, namespace: str) -> None:
    bad = deployment("Bad_Name", -1)
    out = cluster.kubectl(kubectl.settings, "apply", "-n", namespace, "-f", "-", stdin=bad, check=False)
    assert out.returncode != 0
    assert "is invalid" in out.stderr
    assert "spec.replicas" in out.stderr
    assert not kubectl.json("get", "deployments", "-n", namespace)["items"]


def test_cluster_up_on_a_running_cluster_is_a_noop(live_cluster: ClusterSettings, capsys: Any) -> None:
    before = set(cluster.component_pids(live_cluster))
    cluster.up(live_cluster)
    assert "already running" in capsys.readouterr().err
    assert set(cluster.component_pids(live_cluster)) == before


def test_busy_port_gives_a_clear_error(live_cluster: ClusterSettings, tmp_path: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        other = live_cluster.model_copy(update={
            "cluster_name": "busy", "apiserver_port": port, "state_dir": tmp_path,
            "kubeconfig": tmp_path / "kubeconfig"})
        with pytest.raises(processes.ClusterError, match=f"port {port} is busy"):
            cluster.up(other)
    assert not (tmp_path / "kwok").exists(), "nothing may be created when the port is busy"


def test_dry_run_uses_only_local_binaries(live_cluster: ClusterSettings, tmp_path: Any) -> None:
    bindir = build.ensure_binaries(live_cluster)
    other = live_cluster.model_copy(update={"cluster_name": "dry", "state_dir": tmp_path,
                                            "kubeconfig": tmp_path / "kubeconfig"})
    config = tmp_path / "kwokctl.yaml"
    config.write_text(layout.kwokctl_config(other))
    out = cluster.kwokctl(other, bindir, *layout.kwokctl_create_args(other, bindir, config), "--dry-run")
    text = out.stdout + out.stderr
    assert "kube-apiserver" in text and "etcd" in text
    hosts = set(re.findall(r"https?://([^/:\s]+)", text))
    # Only local endpoints; the service-account issuer is an identifier, never fetched.
    assert hosts <= {"127.0.0.1", "0.0.0.0", "kubernetes.default.svc.cluster.local"}, hosts
    fetches = [line for line in text.splitlines() if line.startswith("# Download ")]
    # kwokctl "downloads" each binary; every source must be a file of our local build.
    assert len(fetches) == 5
    for line in fetches:
        source = line.removeprefix("# Download ").split(" to ")[0]
        assert source.startswith(str(bindir) + "/"), line


def test_nodes_look_like_real_ones(kubectl: Kubectl, settings: ClusterSettings) -> None:
    nodes = [n for n in kubectl.json("get", "nodes")["items"]
             if n["metadata"]["labels"].get("k8sim.io/pool") and "k8sim.io/bench" not in n["metadata"]["labels"]]
    assert len(nodes) == sum(int(p.get("count", 1)) for p in topology.load_pools(settings.nodepools))
    ips = []
    for node in nodes:
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["Hostname"] == node["metadata"]["name"]
        ips.append(addresses["InternalIP"])
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == topology.KUBERNETES_VERSION
        assert info["osImage"].startswith("Ubuntu") and info["kernelVersion"]
        labels = node["metadata"]["labels"]
        assert labels["node.kubernetes.io/instance-type"] and labels["topology.kubernetes.io/zone"]
        assert labels["topology.kubernetes.io/region"]
    assert len(set(ips)) == len(ips) and all(ip.startswith("10.240.") for ip in ips)
    wide = kubectl("get", "nodes", "-o", "wide")
    assert topology.KUBERNETES_VERSION in wide and "Ubuntu" in wide


def test_host_network_daemonset_runs_on_every_untainted_node(kubectl: Kubectl, namespace: str) -> None:
    """node-exporter's shape: hostNetwork, hostPID, no tolerations; Ready on every CPU node, pod IP = host IP."""
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-exporter"},
        "spec": {"selector": {"matchLabels": {"app": "node-exporter"}},
                 "template": {"metadata": {"labels": {"app": "node-exporter"}},
                              "spec": {"hostNetwork": True, "hostPID": True,
                                       "containers": [{"name": "node-exporter",
                                                       "image": "quay.io/prometheus/node-exporter:v1.9.1",
                                                       "ports": [{"containerPort": 9100, "hostPort": 9100}]}]}}}}))
    untainted = {n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]
                 if not n["spec"].get("taints") and not n["spec"].get("unschedulable")}
    assert len(untainted) >= 10

    def ready() -> list[dict[str, Any]]:
        ds = kubectl.json("get", "daemonset", "node-exporter", "-n", namespace)["status"]
        assert ds.get("desiredNumberScheduled") == len(untainted)
        assert ds.get("numberReady") == len(untainted), ds
        return list(kubectl.json("get", "pods", "-n", namespace, "-l", "app=node-exporter")["items"])
    pods = eventually(ready, 90, "the host-network DaemonSet to be Ready everywhere")
    node_ips = {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"]
                                            if a["type"] == "InternalIP")
                for n in kubectl.json("get", "nodes")["items"]}
    assert {p["spec"]["nodeName"] for p in pods} == untainted
    for pod in pods:
        status = pod["status"]
        assert status["phase"] == "Running"
        assert status["podIP"] == status["hostIP"] == node_ips[pod["spec"]["nodeName"]], pod["metadata"]["name"]


def listening_sockets() -> list[tuple[str, int, str]]:
    """(local address, pid, process name) of every listening TCP socket on this machine."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        local = fields[3]
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', line):
            found.append((local, int(pid), name))
    return found


def simulator_pids(settings: ClusterSettings) -> set[int]:
    """The cluster's components, and every process started from this checkout or its state."""
    pids = set(cluster.component_pids(settings))
    marks = [str(settings.state_dir).encode(), b"k8sim_api", b"k8sim_engine", b"k8sim_operator"]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if any(mark in cmdline for mark in marks):
                pids.add(int(proc.name))
    return pids


def test_every_simulator_socket_listens_on_loopback_only(live_cluster: ClusterSettings, live_services: Any,
                                                         api_url: str, engine_url: str) -> None:
    pids = simulator_pids(live_cluster)
    ports = {live_cluster.postgres_port, live_cluster.redis_port, live_cluster.apiserver_port}
    ours = [(addr, name) for addr, pid, name in listening_sockets()
            if pid in pids or int(addr.rpartition(":")[2]) in ports]  # redis-server rewrites its command line
    names = {name for _, name in ours}
    # The test means something only if it sees every kind of listener.
    # (process names as the kernel keeps them: at most 15 characters)
    assert {"etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok-controller"} <= names, names
    assert any(n.startswith("postgres") for n in names) and any(n.startswith("redis") for n in names), names
    exposed = [(addr, name) for addr, name in ours
               if not (addr.startswith("127.") or addr.startswith("[::1]"))]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_the_control_plane_runs_with_the_configured_gogc(live_cluster: ClusterSettings) -> None:
    """Every Go component kwokctl started inherits GOGC (a fifth less CPU in the garbage collector)."""
    names = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"}
    found: dict[str, str | None] = {}
    for pid in cluster.component_pids(live_cluster):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = dict(e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
        except OSError:
            continue
        name = Path(argv[0].decode()).name
        if name in names:
            found[name] = env.get(b"GOGC", b"").decode() or None
    assert set(found) == names, found
    assert set(found.values()) == {str(live_cluster.control_plane_gogc)}, found


def test_each_component_runs_with_its_profiles_flags(live_cluster: ClusterSettings) -> None:
    """The profile's flags (etcd without fsync, the HPA's timers, eviction tolerations) reach the
    processes, not only kwokctl's configuration."""
    wanted = {c: topology.component_flags(live_cluster.profile, c) for c in topology.PROFILE_COMPONENTS}
    found: dict[str, set[str]] = {}
    for pid in cluster.component_pids(live_cluster):
        try:
            argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if argv and Path(argv[0]).name in wanted:
            found[Path(argv[0]).name] = set(argv[1:])
    assert set(found) == set(wanted), found
    for component, flags in wanted.items():
        missing = {f"--{k}={v}" for k, v in flags.items()} - found[component]
        assert not missing, f"{component} runs without {missing}"
    if live_cluster.profile == "demo":
        assert "--unsafe-no-fsync=true" in found["etcd"]


def test_pods_start_as_the_profiles_stages_say(live_cluster: ClusterSettings, kubectl: Kubectl,
                                               namespace: str) -> None:
    """In `demo` a plain pod goes from scheduled to Running in one write (KWOK's "Started" event
    and no "Created"); a pod with an init container still goes the kubelet's steps (ContainerCreating
    with "Created", the init container, then Ready). `realistic` takes every pod through the steps."""
    init = {"initContainers": [{"name": "migrate", "image": "registry.example/migrate:1.0"}]}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment("plain", 3) + "---\n" + deployment("init", 3, **init))
    for name in ("plain", "init"):
        kubectl("wait", "-n", namespace, f"deployment/{name}", "--for=jsonpath={.status.readyReplicas}=3",
                "--timeout=120s")
    pods = {p["metadata"]["name"]: p for p in kubectl.json("get", "pods", "-n", namespace)["items"]}
    init_pods = {n for n, p in pods.items() if p["spec"].get("initContainers")}
    assert len(init_pods) == 3 and len(pods) == 6
    for pod in pods.values():
        assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"], pod["status"]
    for name in init_pods:
        assert pods[name]["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"

    def kwok_reasons() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {name: set() for name in pods}
        for event in kubectl.json("get", "events", "-n", namespace)["items"]:
            involved = event["involvedObject"]
            if involved.get("kind") == "Pod" and involved["name"] in found:
                found[involved["name"]].add(event["reason"])
        assert all("Scheduled" in r and r & {"Created", "Started"} for r in found.values()), found
        return found
    reasons = eventually(kwok_reasons, 30, "the pods' events")
    one_write = "pod-start" in {s["metadata"]["name"] for s in topology.stages_for_profile(live_cluster.profile)}
    for name, found in reasons.items():
        if name in init_pods or not one_write:
            assert "Created" in found and "Started" not in found, (name, found)
        else:
            assert "Started" in found and "Created" not in found, (name, found)
