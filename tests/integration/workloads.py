"""Deployments sized by hand, for the tests that count what they ask of the nodes."""

from __future__ import annotations

from typing import Any


def deployment(name: str, replicas: int, cpu: str, memory: str = "1Gi", gpus: int = 0, **spec: Any) -> dict[str, Any]:
    """``replicas`` pods each requesting ``cpu`` and ``memory`` (and ``gpus`` whole GPUs); ``spec`` adds
    to the pod spec (nodeSelector, tolerations, affinity)."""
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": f"{name}:1", "resources": resources}],
                                           **spec}}}}
