"""The Helm chart: it lints, renders, passes the apiserver's server-side dry run, hardens every pod,
and its RBAC is both least-privilege and enough: the real API, operator and engine run here under
the chart's service accounts (their own tokens) and do their work; Karpenter's Deployment, rights
and CRDs are upstream's, and its Jobs run here under the chart's account (no second Karpenter)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8sim import karpenter, topology
from k8sim.local import build, layout, processes
from k8sim.local import karpenter as local_karpenter
from k8sim.local.processes import free_port
from k8sim.local.settings import ClusterSettings
from k8sim.settings import CLUSTER_DATA, ROOT, NodeSettings
from tests.ecp_ai import tenant_files

from .conftest import Kubectl, eventually, process, started

pytestmark = pytest.mark.integration

CHART = ROOT / "charts" / "k8s-simulator"
KUBE_VERSION = "1.36.3"
EVERYTHING = ["kwok.enabled=true", "database.bundled.enabled=true", "redis.bundled.enabled=true",
              "auth.token=s3cret", "grafana.dashboards.enabled=true", "engine.serviceMonitor.enabled=true",
              "api.replicas=3", "karpenter.enabled=true"]
KARPENTER_CRDS = {"nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "nodeoverlays.karpenter.sh",
                  "capacitybuffers.autoscaling.x-k8s.io", "kwoknodeclasses.karpenter.kwok.sh"}
#: Containers with no endpoint to probe: the process exiting is their failure, and restarts them.
UNPROBED = {"node-bootstrap"}


@pytest.fixture(scope="module")
def helm(live_cluster: ClusterSettings) -> str:
    return str(build.ensure_helm(live_cluster))


def render(helm: str, release: str, namespace: str, *sets: str) -> tuple[str, list[dict[str, Any]]]:
    args = [helm, "template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    text = processes.run(args).stdout
    return text, [d for d in yaml.safe_load_all(text) if d]


def pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")}


def test_chart_lints_renders_and_passes_a_server_dry_run(helm: str, kubectl: Kubectl, namespace: str) -> None:
    for sets in ([], EVERYTHING):
        lint = processes.run([helm, "lint", str(CHART), "--kube-version", KUBE_VERSION,
                              *[a for s in sets for a in ("--set", s)]])
        assert "0 chart(s) failed" in lint.stdout
    _, docs = render(helm, "sim", namespace)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole"] * 4 + ["ClusterRoleBinding"] * 4 + ["Deployment"] * 3 + [
        "Job", "PodDisruptionBudget", "Secret", "Service", "Service"] + ["ServiceAccount"] * 3
    commands = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["command"]
                for d in docs if d["kind"] in ("Deployment", "Job")}
    assert commands["sim-k8s-simulator-operator"][:4] == ["kopf", "run", "-m", "k8sim_operator.handlers"]
    assert commands["sim-k8s-simulator-api"] == ["python", "-m", "k8sim_api"]
    assert commands["sim-k8s-simulator-migrations"] == ["python", "-m", "k8sim.jobs", "migrate"]
    assert server_dry_run(kubectl, namespace, docs) == len(docs)

    _, docs = render(helm, "sim", namespace, *EVERYTHING)
    # The ServiceMonitor's CRD, as the API installs it at start (this test may run before any API did).
    kubectl("apply", "--server-side", "--field-manager=k8s-simulator", "-f", str(CLUSTER_DATA / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com")
    names = {f"{d['kind']}/{d['metadata']['name']}" for d in docs}
    assert {"Deployment/sim-k8s-simulator-kwok", "StatefulSet/sim-k8s-simulator-postgresql",
            "Deployment/sim-k8s-simulator-redis", "Job/sim-k8s-simulator-nodes-apply",
            "Job/sim-k8s-simulator-nodes-delete", "ServiceMonitor/sim-k8s-simulator-engine",
            "ConfigMap/sim-k8s-simulator-dashboards", "Secret/sim-k8s-simulator-api-token"} <= names
    assert server_dry_run(kubectl, namespace, docs) == len(docs)


def server_dry_run(kubectl: Kubectl, namespace: str, docs: list[dict[str, Any]]) -> int:
    """The apiserver's dry run of every document, in the release's namespace unless it names its own
    (Karpenter's Role in kube-system); how many passed."""
    placed = [d for d in docs if d["metadata"].get("namespace")]
    out = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                  stdin=yaml.safe_dump_all([d for d in docs if d not in placed]))
    if placed:
        out += kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(placed))
    return out.count("(server dry run)")


def test_every_pod_is_hardened_and_the_pieces_fit_together(helm: str, kubectl: Kubectl, namespace: str) -> None:
    _, docs = render(helm, "sim", namespace, *EVERYTHING)
    by_name = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
    # No pod on a fake node (KWOK would call it Running): the selector leaves none of this cluster's
    # nodes, all fake, the static pools' and Karpenter's alike.
    real_nodes = {"key": "type", "operator": "NotIn", "values": ["kwok"]}
    assert kubectl("get", "nodes", "-l", "type notin (kwok)", "-o", "name") == ""
    assert kubectl("get", "nodes", "-o", "name").strip() != ""
    for name, spec in pods(docs).items():
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [real_nodes]}], name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        long_running = not name.startswith("Job/")
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), (name, container["name"])
            if long_running and container in spec["containers"] and container["name"] not in UNPROBED:
                assert "readinessProbe" in container and "livenessProbe" in container, (name, container["name"])
    deployments = {n.split("/", 1)[1]: d for n, d in by_name.items() if n.startswith("Deployment/")}
    assert deployments["sim-k8s-simulator-api"]["spec"]["replicas"] == 3
    assert deployments["sim-k8s-simulator-operator"]["spec"]["replicas"] == 1
    assert deployments["sim-k8s-simulator-engine"]["spec"]["replicas"] == 1

    def env(deployment: str) -> dict[str, Any]:
        container = deployments[deployment]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}

    api = env("sim-k8s-simulator-api")
    assert api["K8SIM_API_TOKEN"] == {"secretKeyRef": {"name": "sim-k8s-simulator-api-token", "key": "API_TOKEN"}}
    assert by_name["Secret/sim-k8s-simulator-api-token"]["stringData"]["API_TOKEN"] == "s3cret"
    assert api["K8SIM_REDIS_URL"] == "redis://sim-k8s-simulator-redis:6379/0"
    db = by_name["Secret/sim-k8s-simulator-db"]["stringData"]
    assert db["DATABASE_URL"].endswith(f"{db['POSTGRES_PASSWORD']}@sim-k8s-simulator-postgresql:5432/k8sim")
    assert len(db["POSTGRES_PASSWORD"]) == 32
    for deployment in ("sim-k8s-simulator-operator", "sim-k8s-simulator-engine"):
        assert env(deployment)["K8SIM_DATABASE_URL"] == {"secretKeyRef": {"name": "sim-k8s-simulator-db",
                                                                          "key": "DATABASE_URL"}}
    boards = by_name["ConfigMap/sim-k8s-simulator-dashboards"]
    assert boards["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {p.name: json.loads(p.read_text()) for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert {k: json.loads(v) for k, v in boards["data"].items()} == shipped and len(shipped) == 5
    kwok = deployments["sim-k8s-simulator-kwok"]["spec"]["template"]["spec"]
    assert kwok["initContainers"][0]["command"] == ["python", "-m", "k8sim.jobs", "kwok-config", "demo",
                                                    "/etc/kwok/kwok.yaml"]
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in kwok["containers"][0]["args"]


def sa_kubeconfig(kubectl: Kubectl, settings: ClusterSettings, namespace: str, account: str, out: Path) -> Path:
    """A kubeconfig that logs in as the service account, with a token the apiserver issues."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(Path(settings.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    ca = cluster["cluster"].get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        cluster["cluster"]["certificate-authority"] = str((Path(settings.kubeconfig).parent / ca).resolve())
    out.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster], "current-context": account,
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}]}))
    return out


@pytest.fixture
def release(helm: str, kubectl: Kubectl, namespace: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The chart's service accounts and roles applied for real (as `helm install` would)."""
    name = f"r{uuid.uuid4().hex[:6]}"
    _, docs = render(helm, name, namespace, "kwok.enabled=true", "karpenter.enabled=true")
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                             "RoleBinding")]
    # Karpenter's Roles name their namespaces (its release's and kube-system); the rest take the release's.
    placed = [d for d in rbac if d["metadata"].get("namespace")]
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all([d for d in rbac if d not in placed]))
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(placed))
    accounts = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["metadata"]["name"]
                for d in rbac if d["kind"] == "ServiceAccount"}
    yield name, accounts
    kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={name}", check=False)
    kubectl("delete", "role,rolebinding", "-n", "kube-system", "-l", f"app.kubernetes.io/instance={name}",
            check=False)


def test_each_component_may_do_its_job_and_no_more(kubectl: Kubectl, namespace: str,
                                                   release: tuple[str, dict[str, str]]) -> None:
    _, accounts = release
    assert set(accounts) == {"api", "operator", "engine", "kwok", "node-setup", "karpenter"}

    def can(component: str, verb: str, resource: str) -> bool:
        resource, _, subresource = resource.partition("/")
        extra = [f"--subresource={subresource}"] if subresource else []
        answer = kubectl("auth", "can-i", verb, resource, *extra, "--all-namespaces",
                         f"--as=system:serviceaccount:{namespace}:{accounts[component]}", check=False)
        return answer.strip() == "yes"

    expected = {
        ("api", "create", "deployments.apps"): True, ("api", "patch", "customresourcedefinitions"): True,
        ("api", "list", "secrets"): True, ("api", "delete", "nodes"): False, ("api", "patch", "nodes/status"): False,
        ("api", "create", "persistentvolumes"): False,
        ("operator", "list", "secrets"): True, ("operator", "watch", "deployments.apps"): True,
        ("operator", "create", "persistentvolumes"): True, ("operator", "patch", "services/status"): True,
        ("operator", "create", "deployments.apps"): False, ("operator", "update", "secrets"): False,
        # Scenarios: a GPU fault fails the pod on the device and takes the device out of allocatable, a spot
        # interruption ends the NodeClaim, tells it in Events and takes the pods left on the instance with it,
        # a capacity shortage is a ConfigMap Karpenter's provider reads.
        ("operator", "patch", "pods/status"): True, ("operator", "patch", "nodes/status"): True,
        ("operator", "delete", "pods"): True, ("operator", "create", "events"): True,
        ("operator", "patch", "configmaps"): True, ("operator", "delete", "nodeclaims.karpenter.sh"): True,
        ("operator", "delete", "nodes"): False, ("operator", "delete", "deployments.apps"): False,
        ("engine", "list", "pods"): True, ("engine", "watch", "scenarios.k8sim.io"): True,
        ("engine", "watch", "persistentvolumes"): True, ("engine", "delete", "persistentvolumes"): False,
        ("engine", "list", "secrets"): False, ("engine", "patch", "pods"): False,
        ("kwok", "patch", "pods/status"): True, ("kwok", "update", "leases.coordination.k8s.io"): True,
        ("kwok", "create", "deployments.apps"): False, ("kwok", "list", "secrets"): False,
        ("node-setup", "create", "nodes"): True, ("node-setup", "delete", "pods"): False,
        # The NodePool Jobs apply, prune and delete the release's NodePools and follow their NodeClaims.
        ("node-setup", "create", "nodepools.karpenter.sh"): True,
        ("node-setup", "patch", "nodepools.karpenter.sh"): True,
        ("node-setup", "delete", "kwoknodeclasses.karpenter.kwok.sh"): True,
        ("node-setup", "list", "nodeclaims.karpenter.sh"): True,
        ("node-setup", "create", "nodeclaims.karpenter.sh"): False,
        # Karpenter: what its own chart grants (and its node bootstrap's node writes are among them).
        ("karpenter", "create", "nodeclaims.karpenter.sh"): True,
        ("karpenter", "patch", "nodeclaims.karpenter.sh/status"): True,
        ("karpenter", "patch", "nodes"): True, ("karpenter", "patch", "nodes/status"): True,
        ("karpenter", "delete", "nodes"): True, ("karpenter", "list", "pods"): True,
        ("karpenter", "create", "pods/eviction"): True, ("karpenter", "watch", "nodepools.karpenter.sh"): True,
        ("karpenter", "patch", "kwoknodeclasses.karpenter.kwok.sh"): True,
        ("karpenter", "create", "nodepools.karpenter.sh"): False, ("karpenter", "list", "secrets"): False,
        ("karpenter", "create", "pods"): False, ("karpenter", "create", "deployments.apps"): False,
        ("karpenter", "list", "configmaps"): False,
    }
    actual = {key: can(*key) for key in expected}
    assert actual == expected

    def can_in(namespace_: str, verb: str, resource: str) -> bool:
        answer = kubectl("auth", "can-i", verb, resource, "-n", namespace_,
                         f"--as=system:serviceaccount:{namespace}:{accounts['karpenter']}", check=False)
        return answer.strip() == "yes"

    # Its leader election in the release's namespace; the shortages ConfigMap our provider reads, and no other.
    assert {(ns, verb, res): can_in(ns, verb, res) for ns, verb, res in [
        (namespace, "create", "leases.coordination.k8s.io"),
        (namespace, "update", "leases.coordination.k8s.io/karpenter-leader-election"),
        (namespace, "update", "leases.coordination.k8s.io/other"),
        ("default", "create", "leases.coordination.k8s.io"),
        ("kube-system", "get", "configmaps/k8sim-capacity-shortages"),
        ("kube-system", "get", "configmaps/other"),
        ("kube-system", "update", "configmaps/k8sim-capacity-shortages"),
    ]} == {
        (namespace, "create", "leases.coordination.k8s.io"): True,
        (namespace, "update", "leases.coordination.k8s.io/karpenter-leader-election"): True,
        (namespace, "update", "leases.coordination.k8s.io/other"): False,
        ("default", "create", "leases.coordination.k8s.io"): False,
        ("kube-system", "get", "configmaps/k8sim-capacity-shortages"): True,
        ("kube-system", "get", "configmaps/other"): False,
        ("kube-system", "update", "configmaps/k8sim-capacity-shortages"): False,
    }


def test_the_simulator_works_under_the_charts_service_accounts(settings: ClusterSettings, kubectl: Kubectl,
                                                                namespace: str, tmp_path: Path,
                                                                release: tuple[str, dict[str, str]]) -> None:
    _, accounts = release
    configs = {c: sa_kubeconfig(kubectl, settings, namespace, a, tmp_path / f"{c}.kubeconfig")
               for c, a in accounts.items()}

    # node-setup registers a pool's nodes (the local KWOK plays them) and removes them.
    pool = f"chart{uuid.uuid4().hex[:5]}"
    pools = tmp_path / "pools.yaml"
    pools.write_text(yaml.safe_dump({"pools": [{"name": pool, "count": 1, "cpu": "8", "memory": "32Gi"}]}))
    env = {**os.environ, "K8SIM_KUBECONFIG": str(configs["node-setup"]), "K8SIM_NODEPOOLS": str(pools),
           "K8SIM_NODE_IP_RANGE": "10.251.0.0/16"}
    processes.run([sys.executable, "-m", "k8sim.jobs", "nodes", "apply"], env=env)
    eventually(lambda: kubectl("get", "node", f"{pool}-0", "-o",
                               "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True",
               60, "the chart-registered node Ready")

    logs = {c: tmp_path / f"{c}.log" for c in ("operator", "api", "engine")}
    operator_env = {"K8SIM_KUBECONFIG": str(configs["operator"]), "K8SIM_SPOOL": str(tmp_path / "spool.jsonl")}
    liveness = f"http://127.0.0.1:{free_port()}/healthz"  # Kopf serves it once its startup has succeeded
    api_port, engine_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    engine = f"http://127.0.0.1:{engine_port}"
    tenant = f"c{uuid.uuid4().hex[:5]}"
    try:
        token = uuid.uuid4().hex  # as the chart passes auth.token
        api_env = {"K8SIM_KUBECONFIG": str(configs["api"]), "K8SIM_API_PORT": str(api_port), "K8SIM_API_TOKEN": token}
        auth = {"Authorization": f"Bearer {token}"}
        engine_env = {"K8SIM_KUBECONFIG": str(configs["engine"]), "K8SIM_ENGINE_PORT": str(engine_port),
                      "K8SIM_METRICS_API_PORT": str(free_port()), "K8SIM_TICK_SECONDS": "1",
                      "K8SIM_REGISTER_METRICS_APIS": "false"}
        with process([sys.executable, "-m", "kopf", "run", "-m", "k8sim_operator.handlers", "--all-namespaces",
                      "--standalone", "--quiet", f"--liveness={liveness}"], operator_env, logs["operator"]) as op, \
             process([sys.executable, "-m", "k8sim_api"], api_env, logs["api"]) as api_proc, \
             process([sys.executable, "-m", "k8sim_engine"], engine_env, logs["engine"]) as engine_proc:
            started(liveness, op, logs["operator"])
            started(f"{api}/health", api_proc, logs["api"])
            started(f"{engine}/health", engine_proc, logs["engine"])
            # The API applies a whole ECP-AI tenant; its volumes bind because the operator provisions them.
            body = {"manifest": tenant_files(tenant, gpu="v100"), "tenant_id": tenant}
            refused = httpx.post(f"{api}/k8s/manifest/deploy", json=body, timeout=30)
            assert refused.status_code == 401 and kubectl("get", "ns", f"ecp-ai-{tenant}", check=False) == ""
            resp = httpx.post(f"{api}/k8s/manifest/deploy", json=body, headers=auth, timeout=120)
            assert resp.status_code == 200 and resp.json()["status"] == "completed", resp.text[:2000]
            pvcs = kubectl.json("get", "pvc", "-n", f"ecp-ai-{tenant}")["items"]
            assert pvcs and all(p["status"]["phase"] == "Bound" for p in pvcs)
            # The engine, reading with its own rights, attributes the tenant's pods.
            eventually(lambda: f'namespace="ecp-ai-{tenant}"' in httpx.get(f"{engine}/metrics", timeout=30).text,
                       60, "the engine's series for the tenant")
            # Health polls are answered before the middleware stack once a snapshot is in: still behind the token.
            eventually(lambda: httpx.get(f"{api}/monitoring/health", headers=auth, timeout=30).status_code == 200,
                       60, "the API's first snapshot")
            assert httpx.get(f"{api}/monitoring/health", timeout=30).status_code == 401
            wrong = httpx.get(f"{api}/monitoring/health", headers={"Authorization": "Bearer x"}, timeout=30)
            assert wrong.status_code == 401
            # The operator records what happened (it only reads to do so).
            history = eventually(lambda: httpx.get(f"{api}/k8s/resources", params={"tenant_id": tenant}, headers=auth,
                                                   timeout=30).json()["count"], 30, "the tenant's objects")
            assert history > 30
            gone = httpx.delete(f"{api}/k8s/resources/tenant/{tenant}", headers=auth, timeout=120)
            assert gone.status_code == 200, gone.text
    finally:
        processes.run([sys.executable, "-m", "k8sim.jobs", "nodes", "delete"], env=env)
        kubectl("delete", "namespace", f"ecp-ai-{tenant}", "--wait=false", "--ignore-not-found", check=False)
    assert kubectl("get", "node", f"{pool}-0", check=False).strip() == ""
    for component, log in logs.items():
        text = log.read_text()
        assert "Forbidden" not in text and " 403" not in text, (component, text[-3000:])


def kwok_args(kwok: Path, deployment: dict[str, Any], config: Path, kubeconfig: Path, port: int) -> list[str]:
    """The local KWOK binary with a chart KWOK container's arguments (this machine's paths and addresses)."""
    local = {"--config": str(config), "--kubeconfig": str(kubeconfig), "--node-ip": "10.0.0.1",
             "--server-address": f"127.0.0.1:{port}"}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return [str(kwok), *(f"{name}={local[name]}" if name in local else arg
                         for arg in args for name in [arg.partition("=")[0]])]


def test_sharded_kwok_controllers_play_disjoint_nodes(settings: ClusterSettings, kubectl: Kubectl, helm: str,
                                                      namespace: str, tmp_path: Path,
                                                      release: tuple[str, dict[str, str]]) -> None:
    """`kwok.shards=2`: two KWOK controllers, run with the chart's arguments, its rendered
    configuration and its account, each play exactly the nodes the chart's node Job put in their
    shard (every lease held by that shard's controller, a pod on each shard Running), and the local
    cluster's own KWOK keeps its hands off them."""
    name, accounts = release
    _, docs = render(helm, name, namespace, "kwok.enabled=true", "kwok.shards=2")
    deployments = {d["metadata"]["name"]: d for d in docs
                   if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "kwok"}
    assert sorted(deployments) == [f"{name}-k8s-simulator-kwok-0", f"{name}-k8s-simulator-kwok-1"]
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("nodes-apply"))
    job_env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    assert job_env["K8SIM_KWOK_SHARDS"] == "2"

    config = tmp_path / "kwok.yaml"
    config.write_text(topology.kwok_config("demo"))  # what the chart's init container runs
    kubeconfig = sa_kubeconfig(kubectl, settings, namespace, accounts["kwok"], tmp_path / "kwok.kubeconfig")
    setup = sa_kubeconfig(kubectl, settings, namespace, accounts["node-setup"], tmp_path / "setup.kubeconfig")
    pool = f"shard{uuid.uuid4().hex[:5]}"
    pools = tmp_path / "pools.yaml"
    pools.write_text(yaml.safe_dump({"pools": [{"name": pool, "count": 6, "cpu": "8", "memory": "32Gi"}]}))
    env = {**os.environ, "K8SIM_KUBECONFIG": str(setup), "K8SIM_NODEPOOLS": str(pools),
           "K8SIM_NODE_IP_RANGE": "10.252.0.0/16", "K8SIM_KWOK_SHARDS": job_env["K8SIM_KWOK_SHARDS"]}
    kwok = build.ensure_binaries(settings) / "kwok"
    local_log = layout.cluster_dir(settings) / "logs" / "kwok-controller.log"
    local_before = local_log.stat().st_size
    logs = {shard: tmp_path / f"kwok-{shard}.log" for shard in (0, 1)}
    ports = {shard: free_port() for shard in (0, 1)}
    try:
        with process(kwok_args(kwok, deployments[f"{name}-k8s-simulator-kwok-0"], config, kubeconfig, ports[0]), {},
                     logs[0]) as k0, \
             process(kwok_args(kwok, deployments[f"{name}-k8s-simulator-kwok-1"], config, kubeconfig, ports[1]), {},
                     logs[1]) as k1:
            started(f"http://127.0.0.1:{ports[0]}/healthz", k0, logs[0])
            started(f"http://127.0.0.1:{ports[1]}/healthz", k1, logs[1])
            processes.run([sys.executable, "-m", "k8sim.jobs", "nodes", "apply"], env=env)
            nodes = {n["metadata"]["name"]: n["metadata"]["labels"].get("k8sim.io/kwok-shard")
                     for n in kubectl.json("get", "nodes", "-l", f"k8sim.io/pool={pool}")["items"]}
            assert len(nodes) == 6 and set(nodes.values()) == {"0", "1"}, nodes  # both shards have nodes

            ids = {shard: eventually(lambda s=shard: re.search(r'"id":"([^"]+)"|\bid=(\S+)', logs[s].read_text()),
                                     20, f"KWOK {shard}'s identity") for shard in (0, 1)}
            identity = {shard: m.group(1) or m.group(2) for shard, m in ids.items()}
            assert identity[0] != identity[1]

            def holders() -> dict[str, str]:
                leases = kubectl.json("get", "leases", "-n", "kube-node-lease")["items"]
                return {lease["metadata"]["name"]: lease["spec"].get("holderIdentity", "")
                        for lease in leases if lease["metadata"]["name"] in nodes}

            expected = {node: identity[int(shard)] for node, shard in nodes.items()}
            eventually(lambda: holders() == expected, 60, "every node's lease held by its shard's controller")

            # Each shard plays the pods on its nodes.
            for shard in ("0", "1"):
                node = next(n for n, s in sorted(nodes.items()) if s == shard)
                kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump({
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"on-{shard}"},
                    "spec": {"nodeName": node, "containers": [{"name": "app", "image": "ecp-ai/app:1"}]}}))
            eventually(lambda: {p["metadata"]["name"]: p["status"].get("phase") for p in
                                kubectl.json("get", "pods", "-n", namespace)["items"]} == {"on-0": "Running",
                                                                                    "on-1": "Running"},
                       60, "a pod on each shard Running")
            assert holders() == expected
            assert k0.poll() is None and k1.poll() is None
    finally:
        kubectl("delete", "pods", "-n", namespace, "--all", "--wait=false", check=False)
        processes.run([sys.executable, "-m", "k8sim.jobs", "nodes", "delete"], env=env)
    for shard, log in logs.items():
        text = log.read_text()
        assert f"k8sim.io/kwok-shard={shard}" in text, text[:2000]  # KWOK logs its node selector
        assert "forbidden" not in text.lower(), text[-3000:]
    with local_log.open("rb") as f:
        f.seek(local_before)
        local_since = f.read().decode(errors="replace")
    assert pool not in local_since, "the local KWOK touched a sharded node"


# --------------------------------------------------------------------------- Karpenter

def karpenter_source(settings: ClusterSettings) -> Path:
    """sigs.k8s.io/karpenter's module as our wrapper's build resolves it (the Go module cache)."""
    env = {**os.environ, "GOTOOLCHAIN": build.KARPENTER_TOOLCHAIN}
    listed = subprocess.run([settings.go, "list", "-m", "-json", "sigs.k8s.io/karpenter"], env=env,
                            cwd=build.KARPENTER_MODULE, capture_output=True, text=True, check=True)
    return Path(json.loads(listed.stdout)["Dir"])


def upstream_rules(template: Path) -> list[dict[str, Any]]:
    """The rules of the ClusterRole in one of Karpenter's chart templates (its templating is outside them)."""
    role = template.read_text().split("kind: ClusterRole\n", 1)[1]
    return list(yaml.safe_load(role.split("rules:\n", 1)[1].split("{{", 1)[0]))


def normalised(rules: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], ...]]:
    return sorted((tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])),
                   tuple(r.get("resourceNames", ()))) for r in rules)


def test_karpenter_renders_as_upstream_runs_it(helm: str, settings: ClusterSettings, namespace: str) -> None:
    """karpenter.enabled: one Deployment (Karpenter, leader election in its namespace, endpoints on the
    pod's interfaces; the node bootstrap beside it), upstream's ClusterRole rules exactly, and the CRDs
    the local simulator installs, kept on uninstall. Off by default, and refused without KWOK."""
    refused = processes.run([helm, "template", "sim", str(CHART), "--kube-version", KUBE_VERSION,
                             "--set", "karpenter.enabled=true"], check=False)
    assert refused.returncode != 0 and "karpenter.enabled needs kwok.enabled" in refused.stderr
    _, plain = render(helm, "sim", namespace, "kwok.enabled=true")
    assert not [d for d in plain if d["kind"] == "CustomResourceDefinition"
                or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "karpenter"]

    _, docs = render(helm, "sim", namespace, "kwok.enabled=true", "karpenter.enabled=true")
    by_name = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
    deployment = by_name["Deployment/sim-k8s-simulator-karpenter"]
    assert deployment["spec"]["replicas"] == 1
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "sim-k8s-simulator-karpenter"
    assert [c["name"] for c in spec["initContainers"]] == ["instance-types"]
    assert spec["initContainers"][0]["command"] == ["python", "-m", "k8sim.karpenter", "instance-types",
                                                    "/etc/karpenter/instance-types.json"]
    controller, bootstrap = spec["containers"]
    assert controller["command"] == ["karpenter-kwok", "--instance-types-file-path=/etc/karpenter/instance-types.json"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in controller["env"]}
    assert env["KARPENTER_BIND_ADDRESS"] == "0.0.0.0"
    assert env["LEADER_ELECTION_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "DISABLE_LEADER_ELECTION" not in env
    assert (env["METRICS_PORT"], env["HEALTH_PROBE_PORT"]) == ("8080", "8081")
    assert controller["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert bootstrap["command"] == ["python", "-m", "k8sim.karpenter", "nodes", "--instance-types",
                                   "/etc/karpenter/instance-types.json", "--ip-range", "10.241.0.0/16"]

    module = karpenter_source(settings)
    upstream = (upstream_rules(module / "kwok/charts/templates/clusterrole.yaml")
                + upstream_rules(module / "kwok/charts/templates/clusterrole-kwok.yaml"))
    assert len(upstream) == 17
    assert normalised(by_name["ClusterRole/sim-k8s-simulator-karpenter"]["rules"]) == normalised(upstream)
    binding = by_name["ClusterRoleBinding/sim-k8s-simulator-karpenter"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sim-k8s-simulator-karpenter",
                                    "namespace": namespace}]

    # The CRDs: the files the local build copies from the module, byte for byte, and rendered unchanged
    # but for Helm's keep policy and the chart's labels.
    local = build.karpenter_dir(settings) / "crds"
    shipped = CHART / "files" / "karpenter-crds"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in local.glob("*.yaml"))
    for path in shipped.iterdir():
        assert path.read_bytes() == (local / path.name).read_bytes(), path.name
    crds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert set(crds) == KARPENTER_CRDS
    for path in local.glob("*.yaml"):
        original = yaml.safe_load(path.read_text())
        crd = crds[original["metadata"]["name"]]
        assert crd["spec"] == original["spec"]
        assert crd["metadata"]["annotations"] == {**original["metadata"]["annotations"],
                                                  "helm.sh/resource-policy": "keep"}
    _, without = render(helm, "sim", namespace, "kwok.enabled=true", "karpenter.enabled=true",
                        "karpenter.installCRDs=false")
    assert not [d for d in without if d["kind"] == "CustomResourceDefinition"]
    assert "Deployment/sim-k8s-simulator-karpenter" in {f"{d['kind']}/{d['metadata']['name']}" for d in without}

    # The image builds the binary the Deployment runs, as the local build does.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"GOTOOLCHAIN={build.KARPENTER_TOOLCHAIN} " in dockerfile
    assert f"ARG KARPENTER_VERSION={build.KARPENTER_VERSION}\n" in dockerfile
    assert "-X sigs.k8s.io/karpenter/pkg/operator.Version=${KARPENTER_VERSION}" in dockerfile
    assert "COPY --from=karpenter /out/karpenter-kwok /usr/local/bin/karpenter-kwok\n" in dockerfile


def test_karpenter_jobs_run_here_under_the_charts_account(settings: ClusterSettings, kubectl: Kubectl, helm: str,
                                                          namespace: str, tmp_path: Path,
                                                          release: tuple[str, dict[str, str]]) -> None:
    """The init container writes the instance types the local Karpenter runs with; the NodePool Job,
    with the chart's arguments and account, passes the apiserver's dry run (the local cluster's own
    NodePools have the same names, so nothing is written), and the pre-delete Job removes the
    release's NodePools and KWOKNodeClasses and nothing else. Karpenter itself is not started: the
    local one already manages this cluster."""
    name, accounts = release
    _, docs = render(helm, name, namespace, "kwok.enabled=true", "karpenter.enabled=true",
                     "karpenter.profileOverrides.consolidate_after=1m", "karpenter.uninstallWaitSeconds=30")
    jobs = {d["metadata"]["name"].rsplit("-", 1)[1]: d["spec"]["template"]["spec"] for d in docs
            if d["kind"] == "Job" and "-nodepools-" in d["metadata"]["name"]}
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-karpenter"))
    kubeconfig = sa_kubeconfig(kubectl, settings, namespace, accounts["node-setup"], tmp_path / "setup.kubeconfig")

    def command_env(container: dict[str, Any]) -> dict[str, str]:
        values = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        return {**os.environ, **values, "K8SIM_KUBECONFIG": str(kubeconfig)}

    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    out = tmp_path / "instance-types.json"
    processes.run([sys.executable if c == "python" else c for c in init["command"][:-1]] + [str(out)],
                  env=command_env(init))
    assert json.loads(out.read_text()) == json.loads(local_karpenter.instance_types_file(settings).read_text())

    apply = jobs["apply"]["containers"][0]
    command = [sys.executable if c == "python" else c for c in apply["command"]]
    overrides = json.loads(command[command.index("--overrides") + 1])
    assert overrides == {"consolidate_after": "1m"}
    wanted = karpenter.chart_manifests("demo", NodeSettings(), name, overrides)
    pools = [d for d in wanted if d["kind"] == "NodePool"]
    assert pools and {p["spec"]["disruption"]["consolidateAfter"] for p in pools} == {"1m"}
    assert {d["metadata"]["labels"]["app.kubernetes.io/instance"] for d in wanted} == {name}
    assert not [p for p in pools if "k8sim.io/kwok-shard" in p["spec"]["template"]["metadata"]["labels"]]
    # Sharded KWOK plays only labelled nodes: each NodePool's nodes go to the shard of its name.
    sharded = [d for d in karpenter.chart_manifests("demo", NodeSettings(kwok_shards=2), name, overrides)
               if d["kind"] == "NodePool"]
    assert {p["metadata"]["name"]: p["spec"]["template"]["metadata"]["labels"]["k8sim.io/kwok-shard"]
            for p in sharded} == {p["metadata"]["name"]: str(topology.shard_of(p["metadata"]["name"], 2))
                                  for p in pools}
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl.json("get", "nodepools")["items"]}
    done = processes.run([*command, "--dry-run"], env=command_env(apply))
    assert (f"NodePools {', '.join(p['metadata']['name'] for p in pools)} applied (server dry run); pruned: none"
            in done.stderr), done.stderr
    bad = processes.run([*command[:command.index("--overrides") + 1], '{"max_nodes": 0}', "--dry-run"],
                        env=command_env(apply), check=False)
    assert bad.returncode == 1 and "max_nodes must be at least 1" in bad.stderr, bad.stderr

    # The pre-delete Job: the release's own (a NodePool that may launch nothing) go, nothing else does.
    pool = f"chart{uuid.uuid4().hex[:5]}"
    labels = {"app.kubernetes.io/managed-by": "k8sim", "app.kubernetes.io/instance": name}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([
        {"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
         "metadata": {"name": pool, "labels": labels}, "spec": {}},
        {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": pool, "labels": labels},
         "spec": {"limits": {"nodes": "0"}, "template": {"spec": {
             "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": pool},
             "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                               "values": ["c6i.8xlarge"]}]}}}}]))
    delete = jobs["delete"]["containers"][0]
    assert delete["command"][-2:] == ["--wait", "30"]
    try:
        gone = processes.run([sys.executable if c == "python" else c for c in delete["command"]],
                             env=command_env(delete))
        assert f"deleted NodePool/{pool}, KWOKNodeClass/{pool}" in gone.stderr, gone.stderr
        eventually(lambda: kubectl("get", "nodepool", pool, "--ignore-not-found") == ""
                   and kubectl("get", "kwoknodeclass", pool, "--ignore-not-found") == "", 30,
                   "the release's NodePool and KWOKNodeClass deleted")
    finally:
        kubectl("delete", "nodepool,kwoknodeclass", pool, "--ignore-not-found", "--wait=false", check=False)
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl.json("get", "nodepools")["items"]}
    assert after == before
