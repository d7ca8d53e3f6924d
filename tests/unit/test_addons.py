"""Pure add-on builders: volumes for claims and load-balancer addresses."""

from __future__ import annotations

import pytest
from k8sim_operator import addons

P = "simulated.k8sim.io"
SSD = {"metadata": {"name": "fast-ssd"}, "provisioner": P, "reclaimPolicy": "Retain",
       "volumeBindingMode": "Immediate", "parameters": {"type": "pd-ssd"}}
STD = {"metadata": {"name": "standard"}, "provisioner": P, "volumeBindingMode": "WaitForFirstConsumer"}


def claim(**annotations: str) -> dict:
    return {"metadata": {"name": "data", "namespace": "ns", "uid": "u1", "annotations": annotations},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "3Gi"}}},
            "status": {"phase": "Pending"}}


def test_immediate_classes_provision_at_once_and_wait_for_first_consumer_waits() -> None:
    assert addons.wants_volume(claim(), SSD, P)
    assert not addons.wants_volume(claim(), STD, P)
    assert addons.wants_volume(claim(**{addons.SELECTED_NODE: "cpu-1"}), STD, P)
    assert not addons.wants_volume(claim(), {**SSD, "provisioner": "other"}, P)
    assert not addons.wants_volume(claim(), None, P)


def test_volume_matches_claim_and_pins_single_node_volumes() -> None:
    pv = addons.volume_for_claim(claim(**{addons.SELECTED_NODE: "cpu-1"}), STD, P)
    assert pv["metadata"]["name"] == "pvc-u1"
    assert pv["spec"]["capacity"] == {"storage": "3Gi"}
    assert pv["spec"]["claimRef"]["uid"] == "u1"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["cpu-1"]
    shared = claim(**{addons.SELECTED_NODE: "cpu-1"})
    shared["spec"]["accessModes"] = ["ReadWriteMany"]
    assert "nodeAffinity" not in addons.volume_for_claim(shared, SSD, P)["spec"]
    assert addons.volume_for_claim(shared, SSD, P)["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


def test_only_released_delete_volumes_of_ours_are_reclaimed() -> None:
    pv = {"metadata": {"annotations": {addons.PROVISIONED_BY: P}}, "spec": {"persistentVolumeReclaimPolicy": "Delete"},
          "status": {"phase": "Released"}}
    assert addons.should_reclaim(pv, P)
    assert not addons.should_reclaim({**pv, "status": {"phase": "Bound"}}, P)
    assert not addons.should_reclaim({**pv, "spec": {"persistentVolumeReclaimPolicy": "Retain"}}, P)


def test_address_pool_skips_used_and_reserved() -> None:
    pool = addons.parse_pool("10.0.0.1-10.0.0.3")
    assert pool == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert addons.lb_address(pool, ["10.0.0.2"], reserved=["10.0.0.1"]) == "10.0.0.3"
    assert addons.lb_address(pool, pool) is None
    assert len(addons.parse_pool("192.168.5.0/30")) == 2
    with pytest.raises(ValueError):
        addons.parse_pool("10.0.0.5-10.0.0.1")
