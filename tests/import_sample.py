"""A source cluster's export as ``kubectl get nodes,namespaces,deployments,… -A -o yaml`` returns it, built
from real public manifests (/work/shared/corpus) with what a running cluster adds to every object (uid,
resourceVersion, managedFields, status, a Service's clusterIP, a Deployment's ReplicaSet and pods bound to
nodes) and nodes as an EKS managed node group's kubelets register them (conditions, images, daemon
endpoints, node info). Shared by the importer's unit and integration tests and its benchmark."""

from __future__ import annotations

import copy
import hashlib
import uuid
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path("/work/shared/corpus")
#: What the export holds, from the corpus: (file, objects kept).
FILES = ("application__php-apache.yaml", "application__hpa__php-apache.yaml", "controllers__job.yaml",
         "configmap__configmaps.yaml", "controllers__nginx-deployment.yaml")
STAMP = "2026-11-28T09:00:00Z"


def _uid(*parts: str) -> str:
    return str(uuid.UUID(hashlib.md5("/".join(parts).encode()).hexdigest()))


def _source_fields(obj: dict[str, Any], version: int) -> dict[str, Any]:
    meta = obj["metadata"]
    meta.update(uid=_uid(obj["kind"], meta.get("namespace", ""), meta["name"]), resourceVersion=str(version),
                creationTimestamp=STAMP, generation=1,
                managedFields=[{"apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1", "manager": "kubectl",
                                "operation": "Update", "time": STAMP, "fieldsV1": {"f:metadata": {}}}])
    meta.setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    return obj


def eks_node(name: str, zone: str, *, group: str = "general", instance_type: str = "m5.xlarge",
             cpu: str = "4", memory: str = "15896812Ki", taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A node of an EKS managed node group as `kubectl get node -o yaml` shows it."""
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": instance_type,
                       "beta.kubernetes.io/os": "linux", "eks.amazonaws.com/capacityType": "ON_DEMAND",
                       "eks.amazonaws.com/nodegroup": group, "failure-domain.beta.kubernetes.io/region": "eu-west-1",
                       "failure-domain.beta.kubernetes.io/zone": zone, "kubernetes.io/arch": "amd64",
                       "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "node.kubernetes.io/instance-type": instance_type,
                       "topology.kubernetes.io/region": "eu-west-1", "topology.kubernetes.io/zone": zone},
            "annotations": {"alpha.kubernetes.io/provided-node-ip": "192.168.12.7",
                            "node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"providerID": f"aws:///{zone}/i-0{_uid(name)[:16].replace('-', '')}",
                 "taints": [*(taints or []), {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute",
                                              "timeAdded": STAMP}]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.12.7"},
                          {"type": "InternalDNS", "address": f"{name}"}, {"type": "Hostname", "address": name}],
            "allocatable": {"cpu": "3920m", "ephemeral-storage": "95551679124", "hugepages-1Gi": "0",
                            "hugepages-2Mi": "0", "memory": "14879980Ki", "pods": "58"},
            "capacity": {"cpu": cpu, "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                         "memory": memory, "pods": "58"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": STAMP,
                            "lastTransitionTime": STAMP}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": [{"names": ["602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon-k8s-cni:v1.18.1"],
                        "sizeBytes": 48125236}],
            "nodeInfo": {"architecture": "amd64", "bootID": _uid("boot", name), "containerRuntimeVersion":
                         "containerd://1.7.11", "kernelVersion": "5.10.205-195.807.amzn2.x86_64",
                         "kubeProxyVersion": "v1.29.0-eks-5e0fdde", "kubeletVersion": "v1.29.0-eks-5e0fdde",
                         "machineID": _uid("machine", name).replace("-", ""), "operatingSystem": "linux",
                         "osImage": "Amazon Linux 2", "systemUUID": _uid("system", name)},
        },
    }
    return _source_fields(node, 1000)


def export(namespace: str = "shop", nodes: list[str] | None = None) -> dict[str, Any]:
    """The export (a v1 List) of one namespace's workloads on three nodes of two node groups."""
    names = nodes or ["ip-192-168-12-7.eu-west-1.compute.internal", "ip-192-168-40-9.eu-west-1.compute.internal",
                      "ip-192-168-70-3.eu-west-1.compute.internal"]
    items: list[dict[str, Any]] = [
        eks_node(names[0], "eu-west-1a"), eks_node(names[1], "eu-west-1b"),
        eks_node(names[2], "eu-west-1a", group="batch", instance_type="c5.2xlarge", cpu="8",
                 taints=[{"key": "workload", "value": "batch", "effect": "NoSchedule"}]),
        _source_fields({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
                        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}, 10),
        _source_fields({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default",
                                                                                   "namespace": namespace}}, 11),
        _source_fields({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt",
                                                                              "namespace": namespace},
                        "data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}}, 12),
        _source_fields({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": "db-password", "namespace": namespace},
                        "data": {"password": "aHVudGVyMg=="}}, 13),
    ]
    version = 100
    for file in FILES:
        for obj in yaml.safe_load_all((CORPUS / file).read_text()):
            if not obj:
                continue
            obj = copy.deepcopy(obj)
            obj["metadata"]["namespace"] = namespace
            version += 1
            items.append(_source_fields(obj, version))
    for obj in list(items):
        kind, meta = obj["kind"], obj["metadata"]
        if kind == "Service":
            obj["spec"].update(clusterIP="10.100.23.7", clusterIPs=["10.100.23.7"], type="ClusterIP")
            obj["status"] = {"loadBalancer": {}}
        elif kind == "Deployment":
            # Pinned to the node group, as teams pin services to theirs (and the test finds them there).
            obj["spec"]["template"]["spec"]["nodeSelector"] = {"eks.amazonaws.com/nodegroup": "general"}
            meta["annotations"]["deployment.kubernetes.io/revision"] = "1"
            replicas = obj["spec"].get("replicas", 1)
            obj["status"] = {"replicas": replicas, "readyReplicas": replicas, "observedGeneration": 1}
            items += _replica_set_and_pods(obj, names, replicas)
        elif kind == "Job":
            uid = meta["uid"]
            obj["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            obj["spec"]["template"]["metadata"] = {"labels": {
                "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                "batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}}
            obj["status"] = {"succeeded": 1}
    items.append(_source_fields({"apiVersion": "v1", "kind": "Event", "metadata": {
        "name": "php-apache.17c", "namespace": namespace}, "reason": "ScalingReplicaSet",
        "involvedObject": {"kind": "Deployment", "name": "php-apache"}}, 500))
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def _replica_set_and_pods(deployment: dict[str, Any], nodes: list[str], replicas: int) -> list[dict[str, Any]]:
    meta = deployment["metadata"]
    template_hash = hashlib.md5(meta["name"].encode()).hexdigest()[:10]
    rs_name = f"{meta['name']}-{template_hash}"
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}
    template = copy.deepcopy(deployment["spec"]["template"])
    labels = {**template["metadata"]["labels"], "pod-template-hash": template_hash}
    rs = _source_fields({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
        "name": rs_name, "namespace": meta["namespace"], "labels": labels, "ownerReferences": [owner]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {**template, "metadata": {"labels": labels}}}}, 300)
    pods = []
    for i in range(replicas):
        pod = _source_fields({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"{rs_name}-{i:05d}", "namespace": meta["namespace"], "labels": labels,
            "ownerReferences": [{**owner, "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                                 "uid": rs["metadata"]["uid"]}]},
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": nodes[i % 2]},
            "status": {"phase": "Running", "podIP": f"192.168.3.{i + 10}"}}, 400 + i)
        pods.append(pod)
    return [rs, *pods]


def export_yaml(namespace: str = "shop", nodes: list[str] | None = None) -> str:
    return yaml.safe_dump(export(namespace, nodes), sort_keys=False)
