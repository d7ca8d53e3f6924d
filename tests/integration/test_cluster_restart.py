"""Stopping and starting the cluster: nothing left running, nothing lost."""

from __future__ import annotations

import pytest

from k8sim.local import cluster, processes
from k8sim.local.settings import ClusterSettings

from .conftest import Kubectl

pytestmark = pytest.mark.integration


def test_down_leaves_no_process_and_up_keeps_objects(
    kubectl: Kubectl, live_cluster: ClusterSettings, namespace: str
) -> None:
    kubectl("create", "configmap", "survivor", "-n", "default", "--from-literal=k=v", check=False)
    uid = kubectl.json("get", "configmap", "survivor", "-n", "default")["metadata"]["uid"]
    assert cluster.component_pids(live_cluster)
    cluster.down(live_cluster)
    try:
        assert cluster.component_pids(live_cluster) == []
        assert not processes.port_in_use(live_cluster.apiserver_port)
    finally:
        cluster.up(live_cluster)
    assert kubectl.json("get", "configmap", "survivor", "-n", "default")["metadata"]["uid"] == uid
    kubectl("delete", "configmap", "survivor", "-n", "default")
    # Every node is played again by the restarted KWOK controller (none left to a stale lease).
    kubectl("create", "deployment", "after-restart", "-n", namespace, "--image=app:1", "--replicas=40")
    kubectl("wait", "-n", namespace, "deployment/after-restart", "--for=jsonpath={.status.readyReplicas}=40",
            "--timeout=60s")
    nodes = {p["spec"]["nodeName"] for p in kubectl.json("get", "pods", "-n", namespace)["items"]}
    assert len(nodes) >= 8, nodes
