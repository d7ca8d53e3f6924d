"""Pure builders of the add-ons a real cluster has: provisioned volumes, LB addresses.

No I/O here; the handlers decide when to call these and send what they return.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


def wants_volume(pvc: Mapping[str, Any], storage_class: Mapping[str, Any] | None, provisioner: str) -> bool:
    """True when this claim is ours to provision now (phase Pending, our class, binding time come)."""
    if storage_class is None or storage_class.get("provisioner") != provisioner:
        return False
    if (pvc.get("spec") or {}).get("volumeName") or (pvc.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if (pvc.get("status") or {}).get("phase", "Pending") != "Pending":
        return False
    if storage_class.get("volumeBindingMode") == "WaitForFirstConsumer":
        return bool(((pvc.get("metadata") or {}).get("annotations") or {}).get(SELECTED_NODE))
    return True


def volume_for_claim(pvc: Mapping[str, Any], storage_class: Mapping[str, Any], provisioner: str) -> dict[str, Any]:
    """The PersistentVolume a dynamic provisioner would create for this claim."""
    meta, spec = pvc["metadata"], pvc.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    name = f"pvc-{meta['uid']}"
    pv_spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
        "storageClassName": storage_class["metadata"]["name"],
        "volumeMode": spec.get("volumeMode", "Filesystem"),
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                     "name": meta["name"], "uid": meta["uid"]},
        "csi": {"driver": provisioner, "volumeHandle": name,
                "volumeAttributes": dict(storage_class.get("parameters") or {})},
    }
    node = (meta.get("annotations") or {}).get(SELECTED_NODE)
    access = set(pv_spec["accessModes"])
    if node and not access & {"ReadWriteMany", "ReadOnlyMany"}:
        # A single-node volume lives where its first consumer was scheduled.
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: provisioner}},
        "spec": pv_spec,
    }


def should_reclaim(pv: Mapping[str, Any], provisioner: str) -> bool:
    """A Released volume of ours whose policy is Delete goes away, as a CSI driver would do."""
    annotations = (pv.get("metadata") or {}).get("annotations") or {}
    return (annotations.get(PROVISIONED_BY) == provisioner
            and (pv.get("status") or {}).get("phase") == "Released"
            and (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete")


def parse_pool(pool: str) -> list[str]:
    """'a.b.c.d-a.b.c.e' or a CIDR into the ordered list of addresses it holds."""
    if "-" in pool:
        first, last = (ipaddress.ip_address(p.strip()) for p in pool.split("-", 1))
        if int(last) < int(first):
            raise ValueError(f"empty address pool {pool!r}")
        return [str(ipaddress.ip_address(i)) for i in range(int(first), int(last) + 1)]
    return [str(a) for a in ipaddress.ip_network(pool.strip(), strict=False).hosts()]


def lb_address(pool: list[str], used: Iterable[str], reserved: Iterable[str] = ()) -> str | None:
    taken = set(used) | set(reserved)
    return next((ip for ip in pool if ip not in taken), None)


def lb_ingress(service: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


def needs_lb_address(service: Mapping[str, Any]) -> bool:
    return (service.get("spec") or {}).get("type") == "LoadBalancer" and not lb_ingress(service)


def status_ingress(ip: str, ports: Iterable[Mapping[str, Any]] = (), *, service: bool = True) -> dict[str, Any]:
    """A status patch with one load-balancer address (Service or, with service=False, Ingress)."""
    entry: dict[str, Any] = {"ip": ip, "ipMode": "VIP"} if service else {"ip": ip}
    port_status = [{"port": p["port"], "protocol": p.get("protocol", "TCP")} for p in ports if "port" in p]
    if port_status:
        entry["ports"] = port_status
    return {"status": {"loadBalancer": {"ingress": [entry]}}}
