"""An ECP-AI tenant manifest, written from CONTRACT.md's description of what ECP-AI generates."""

from __future__ import annotations

from typing import Any

import yaml

APP = ["callbot", "chatbot", "advisor"]
GPU = ["tts-server", "nlp-server", "aicm-server"]
CPU = ["stt-server", "ta-server", "qa-server"]
INFRA = ["nginx", "api-gateway", "postgresql", "auth-service", "vectordb"]


def _labels(tenant: str, app: str | None = None) -> dict[str, str]:
    labels = {"ecp.ai/tenant-id": tenant, "tenant": tenant, "app.kubernetes.io/part-of": "ecp-ai"}
    if app:
        labels["app"] = app
    return labels


def _deployment(tenant: str, ns: str, name: str, replicas: int, *, gpu: str | None = None,
                cpu: str = "250m", memory: str = "512Mi", limit_memory: str = "2Gi",
                volumes: dict[str, str] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory},
                                 "limits": {"cpu": "2", "memory": limit_memory}}
    pod: dict[str, Any] = {"containers": [{"name": name, "image": f"registry.ecp-ai.example/{name}:1.4.2",
                                           "ports": [{"containerPort": 8080}], "resources": resources,
                                           "envFrom": [{"configMapRef": {"name": "ecp-config"}}]}]}
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = "1"
        pod["nodeSelector"] = {"accelerator": f"nvidia-{gpu}"}
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                               "effect": "NoSchedule"}]
    if volumes:
        mounts = [{"name": claim, "mountPath": path} for claim, path in volumes.items()]
        pod["containers"][0]["volumeMounts"] = mounts
        pod["volumes"] = [{"name": claim, "persistentVolumeClaim": {"claimName": claim}} for claim in volumes]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": _labels(tenant, name)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": _labels(tenant, name)}, "spec": pod}}}


def _service(tenant: str, ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns,
                                                                 "labels": _labels(tenant, name)},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def _hpa(tenant: str, ns: str, name: str, low: int, high: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": ns, "labels": _labels(tenant, name)},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": low, "maxReplicas": high,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 70}}}]}}


def _pvc(tenant: str, ns: str, name: str, storage_class: str, mode: str, size: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": _labels(tenant)},
            "spec": {"storageClassName": storage_class, "accessModes": [mode],
                     "resources": {"requests": {"storage": size}}}}


def tenant_files(tenant: str, *, gpu: str = "t4", namespace: str | None = None) -> dict[str, str]:
    """ECP-AI's generator output: file name → YAML, each file starting with '---'."""
    ns = namespace or f"ecp-ai-{tenant}"
    files: dict[str, list[dict[str, Any]]] = {
        "01-namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": ns, "labels": _labels(tenant)}}],
        "02-configmap.yaml": [{"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "ecp-config", "namespace": ns, "labels": _labels(tenant)},
                               "data": {"TENANT_ID": tenant, "LOG_LEVEL": "info", "STT_LANG": "ko-KR"}}],
        "03-storage.yaml": [_pvc(tenant, ns, "shared-models", "fast-ssd", "ReadWriteMany", "100Gi"),
                            _pvc(tenant, ns, "postgres-data", "standard", "ReadWriteOnce", "20Gi"),
                            _pvc(tenant, ns, "vector-data", "fast-ssd", "ReadWriteMany", "50Gi")],
        "04-app-services.yaml": [], "05-gpu-services.yaml": [], "06-cpu-services.yaml": [],
        "07-infrastructure.yaml": [],
    }
    for name in APP:
        files["04-app-services.yaml"] += [_deployment(tenant, ns, name, 2), _service(tenant, ns, name),
                                          _hpa(tenant, ns, name, 2, 10)]
    for name in GPU:
        files["05-gpu-services.yaml"] += [
            _deployment(tenant, ns, name, 1, gpu=gpu, cpu="1", memory="4Gi", limit_memory="8Gi",
                        volumes={"shared-models": "/models"}),
            _service(tenant, ns, name), _hpa(tenant, ns, name, 1, 4)]
    for name in CPU:
        files["06-cpu-services.yaml"] += [_deployment(tenant, ns, name, 2, cpu="500m", memory="1Gi"),
                                          _service(tenant, ns, name), _hpa(tenant, ns, name, 2, 8)]
    for name in INFRA:
        volumes = {"postgresql": {"postgres-data": "/var/lib/postgresql/data"},
                   "vectordb": {"vector-data": "/data"}}.get(name)
        files["07-infrastructure.yaml"] += [_deployment(tenant, ns, name, 1, volumes=volumes),
                                            _service(tenant, ns, name)]
    files["08-network-policy.yaml"] = [{
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "tenant-isolation", "namespace": ns, "labels": _labels(tenant)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {}}]}]}}]
    files["09-monitoring.yaml"] = [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
         "metadata": {"name": "ecp-ai-services", "namespace": ns, "labels": _labels(tenant)},
         "spec": {"selector": {"matchLabels": {"app.kubernetes.io/part-of": "ecp-ai"}},
                  "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]}},
        {"apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
         "metadata": {"name": "postgresql-vpa", "namespace": ns, "labels": _labels(tenant)},
         "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "postgresql"},
                  "updatePolicy": {"updateMode": "Off"}}}]
    return {name: "---\n" + yaml.safe_dump_all(docs, sort_keys=False) for name, docs in files.items()}


def tenant_manifest(tenant: str, **kwargs: Any) -> str:
    """The same files joined as ECP-AI joins them: '\\n---\\n' between files already starting with '---'."""
    return "\n---\n".join(tenant_files(tenant, **kwargs).values())


def object_count(tenant: str) -> int:
    return sum(1 for text in tenant_files(tenant).values() for d in yaml.safe_load_all(text) if d)
