"""GET /k8s/service/{name}: one service's rollout, as ECP-AI's dashboard shows it."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from k8sim import explain, lifecycle
from k8sim_api.deps import KubeDep
from k8sim_api.schemas import NAMESPACE, OBJECT_NAME, ErrorResponse, PodSummary, ServiceRollout

router = APIRouter(prefix="/k8s/service", tags=["services"])

WORKLOADS = [("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet")]


def selector_string(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def pod_summary(pod: dict[str, Any]) -> PodSummary:
    state = lifecycle.summarise(pod)
    containers = pod.get("spec", {}).get("containers") or [{}]
    return PodSummary(name=pod["metadata"]["name"], status=state.phase, image=containers[0].get("image"),
                      ready=bool(state.ready), restarts=state.restarts,
                      created=pod["metadata"].get("creationTimestamp"), node=state.node)


@router.get("/{name}", response_model=ServiceRollout, responses={404: {"model": ErrorResponse}},
            summary="Desired and current image, replica counts and pods of one service")
async def service_status(name: Annotated[str, Path(**OBJECT_NAME)], kube: KubeDep,
                         namespace: Annotated[str, Query(**NAMESPACE)] = "default") -> ServiceRollout:
    workload = None
    for api_version, kind in WORKLOADS:
        workload = await kube.get(api_version, kind, name, namespace)
        if workload:
            break
    service = await kube.get("v1", "Service", name, namespace)
    if workload is None and service is None:
        raise HTTPException(404, f'no Deployment, StatefulSet, DaemonSet or Service "{name}" in "{namespace}"')
    if workload is not None:
        match = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    else:
        match = (service or {}).get("spec", {}).get("selector") or {}
    listed = await kube.list("v1", "Pod", namespace, label_selector=selector_string(match)) if match else []
    pods = [pod_summary(p) for p in listed]
    running_images = Counter(p.image for p in pods if p.ready)
    body: dict[str, Any] = {"name": name, "namespace": namespace, "pods": pods,
                            "currentImage": running_images.most_common(1)[0][0] if running_images else None}
    if workload is not None:
        spec, status = workload.get("spec") or {}, workload.get("status") or {}
        containers = (spec.get("template") or {}).get("spec", {}).get("containers") or [{}]
        state = lifecycle.summarise(workload)
        desired = state.replicas if state.replicas is not None else len(pods)
        times = [workload["metadata"].get("creationTimestamp")] + [
            c.get("lastUpdateTime") or c.get("lastTransitionTime") for c in status.get("conditions") or []]
        body.update({
            "kind": workload["kind"], "desiredImage": containers[0].get("image"),
            "replicas": {"desired": desired, "ready": status.get("readyReplicas", status.get("numberReady", 0)) or 0,
                         "available": status.get("availableReplicas", status.get("numberAvailable", 0)) or 0,
                         "updated": status.get("updatedReplicas", status.get("updatedNumberScheduled", 0)) or 0},
            "deploymentStatus": ("completed" if state.ready
                                 else "failed" if state.phase == "Failed" else "in_progress"),
            "lastUpdated": max(t for t in times if t),
        })
        if not state.ready:
            body["reason"] = await explain.Explainer(kube).reason(workload) or state.reason
    else:
        ready = sum(1 for p in pods if p.ready)
        body.update({"kind": "Service", "desiredImage": body["currentImage"],
                     "replicas": {"desired": len(pods), "ready": ready, "available": ready, "updated": len(pods)},
                     "deploymentStatus": "completed" if pods and ready == len(pods) else "in_progress",
                     "lastUpdated": (service or {}).get("metadata", {}).get("creationTimestamp")})
    return ServiceRollout.model_validate(body)
