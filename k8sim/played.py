"""Add-ons the simulator plays: the metrics backends (prometheus-adapter, metrics-server, KEDA) whose
APIServices users apply, recognised from their objects and served by the engine in their place.

There is no pod network: kube-apiserver reaches an APIService's Service through the local cluster's
egress proxy (``python -m k8sim egress``), which sends connections for a metrics APIService's Service
to the engine (:func:`egress_target`). The engine then answers as the add-on behind that Service would
(:func:`backend_of`): with the adapter's own rules, as metrics-server, or as KEDA's metrics server.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import posixpath
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

#: The API groups the engine serves (and plays others' backends for).
METRICS_GROUPS = ("metrics.k8s.io", "custom.metrics.k8s.io", "external.metrics.k8s.io")
#: The engine's own ExternalName Service; it carries the engine's metrics port, so the egress proxy finds
#: the engine even while every APIService of ours is held by an add-on it plays.
ENGINE_SERVICE = ("kube-system", "k8sim-metrics")
ENGINE_PORT_ANNOTATION = "k8s-simulator.io/metrics-api-port"


class Addon(StrEnum):
    PROMETHEUS_ADAPTER = "prometheus-adapter"
    METRICS_SERVER = "metrics-server"
    KEDA = "keda"


#: Image repositories (last path part, without tag or digest) of each add-on's API server, as their
#: releases publish them (registry.k8s.io, quay.io/coreos, directxman12, ghcr.io/kedacore).
IMAGES = {
    "prometheus-adapter": Addon.PROMETHEUS_ADAPTER, "k8s-prometheus-adapter": Addon.PROMETHEUS_ADAPTER,
    "k8s-prometheus-adapter-amd64": Addon.PROMETHEUS_ADAPTER,
    "metrics-server": Addon.METRICS_SERVER, "metrics-server-amd64": Addon.METRICS_SERVER,
    "keda-metrics-apiserver": Addon.KEDA,
}


#: KEDA's operator (the loop that writes HPAs and scales to zero); its metrics server is the Addon.KEDA above.
KEDA_OPERATOR_IMAGE = "keda"


def image_name(image: str) -> str:
    return image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]


def keda_operator_present(deployments: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a Deployment runs KEDA's operator (ghcr.io/kedacore/keda): only then do ScaledObjects act."""
    for deployment in deployments:
        template = _spec(deployment).get("template") or {}
        for container in _spec(template).get("containers") or []:
            if image_name(str(container.get("image", ""))) == KEDA_OPERATOR_IMAGE:
                return True
    return False


def image_addon(image: str) -> Addon | None:
    """The add-on an image runs: ``registry.k8s.io/prometheus-adapter/prometheus-adapter:v0.12.0`` → adapter."""
    return IMAGES.get(image_name(image))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def service_ref(apiservice: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(namespace, name, port) of an APIService's backend; None when kube-apiserver serves it itself."""
    ref = _spec(apiservice).get("service")
    if not ref:
        return None
    return str(ref.get("namespace", "")), str(ref.get("name", "")), int(ref.get("port") or 443)


def is_engines(apiservice: Mapping[str, Any]) -> bool:
    ref = service_ref(apiservice)
    return ref is not None and ref[:2] == ENGINE_SERVICE


def engine_address(services: Iterable[Mapping[str, Any]]) -> tuple[str, int] | None:
    """Where the engine's metrics APIs listen, from its ExternalName Service; None when no engine registered."""
    for service in services:
        meta = _meta(service)
        if (meta.get("namespace"), meta.get("name")) != ENGINE_SERVICE:
            continue
        host = _spec(service).get("externalName")
        port = (meta.get("annotations") or {}).get(ENGINE_PORT_ANNOTATION)
        if host and port and str(port).isdigit():
            return str(host), int(port)
    return None


def _service_port(service: Mapping[str, Any], port: int) -> Mapping[str, Any] | None:
    for entry in _spec(service).get("ports") or []:
        if int(entry.get("port") or 0) == port:
            found: Mapping[str, Any] = entry
            return found
    return None


def egress_target(host: str, port: int, services: Iterable[Mapping[str, Any]],
                  apiservices: Iterable[Mapping[str, Any]],
                  endpoint_slices: Iterable[Mapping[str, Any]] = ()) -> tuple[str, int] | None:
    """Where the egress proxy sends kube-apiserver's connection to ``host:port``: the engine when that is
    the cluster IP (or an endpoint) of a Service behind a metrics APIService other than the engine's own;
    None to dial ``host:port`` itself (the engine's ExternalName target, a webhook, a KWOK kubelet)."""
    services = list(services)
    backends = {ref[:2] for a in apiservices
                if _spec(a).get("group") in METRICS_GROUPS and not is_engines(a) and (ref := service_ref(a))}
    if not backends:
        return None
    hit = False
    for service in services:
        meta = _meta(service)
        if (meta.get("namespace"), meta.get("name")) not in backends:
            continue
        ips = {_spec(service).get("clusterIP"), *(_spec(service).get("clusterIPs") or [])}
        if host in ips and _service_port(service, port) is not None:
            hit = True
            break
    if not hit:
        # --enable-aggregator-routing: kube-apiserver dials an endpoint of the Service (a pod IP KWOK gave).
        for endpoint_slice in endpoint_slices:
            meta = _meta(endpoint_slice)
            owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if (meta.get("namespace"), owner) not in backends:
                continue
            if any(host in (e.get("addresses") or []) for e in endpoint_slice.get("endpoints") or []):
                hit = True
                break
    if not hit:
        return None
    return engine_address(services)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# --------------------------------------------------------------------------- which add-on a backend is


@dataclasses.dataclass(frozen=True)
class Backend:
    """The add-on behind one APIService as the engine plays it."""

    addon: Addon | None  # None: a backend the simulator does not play
    namespace: str
    service: str
    deployment: str | None = None
    #: prometheus-adapter: the ConfigMap and key its ``--config`` file comes from.
    config_map: str | None = None
    config_key: str | None = None
    #: Why it is not played, or what is missing (no Deployment behind the Service, no config volume).
    problem: str | None = None


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _config_source(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
    """(ConfigMap, key, problem) of prometheus-adapter's ``--config`` file: the volume mounted where it is."""
    args = [*(container.get("command") or []), *(container.get("args") or [])]
    path = None
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
    if not path:
        return None, None, "the adapter has no --config argument: it serves no custom or external metrics"
    path = posixpath.normpath(path)
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        base = posixpath.normpath(str(mount.get("mountPath", "")))
        if not path.startswith(base.rstrip("/") + "/"):
            continue
        rest = path[len(base.rstrip("/")) + 1:]
        if mount.get("subPath"):
            rest = posixpath.join(str(mount["subPath"]), rest)
        source = (volumes.get(mount.get("name")) or {}).get("configMap")
        if not source:
            return None, None, f"the volume mounted at {base} is not a ConfigMap"
        key = rest
        for item in source.get("items") or []:
            if item.get("path") == rest:
                key = str(item.get("key"))
        return str(source.get("name")), key, ""
    return None, None, f"no volume is mounted where --config={path} points"


def backend_of(apiservice: Mapping[str, Any], services: Iterable[Mapping[str, Any]],
               deployments: Iterable[Mapping[str, Any]]) -> Backend | None:
    """The add-on behind a metrics APIService (None for the engine's own or kube-apiserver's): the
    Deployment whose pods the Service selects and the add-on its image runs."""
    ref = service_ref(apiservice)
    if ref is None or ref[:2] == ENGINE_SERVICE:
        return None
    namespace, name, _ = ref
    service = next((s for s in services if (_meta(s).get("namespace"), _meta(s).get("name")) == (namespace, name)),
                   None)
    if service is None:
        return Backend(None, namespace, name, problem=f"the Service {namespace}/{name} does not exist")
    selector = _spec(service).get("selector") or {}
    for deployment in deployments:
        if _meta(deployment).get("namespace") != namespace:
            continue
        template = _spec(deployment).get("template") or {}
        if not _selects(selector, _meta(template).get("labels") or {}):
            continue
        pod_spec = _spec(template)
        for container in pod_spec.get("containers") or []:
            addon = image_addon(str(container.get("image", "")))
            if addon is None:
                continue
            config_map = key = None
            problem = ""
            if addon == Addon.PROMETHEUS_ADAPTER:
                config_map, key, problem = _config_source(pod_spec, container)
            return Backend(addon, namespace, name, str(_meta(deployment).get("name")), config_map, key,
                           problem or None)
        return Backend(None, namespace, name, str(_meta(deployment).get("name")),
                       problem="its pods run no add-on the simulator plays (prometheus-adapter, metrics-server, "
                               "KEDA's metrics server)")
    return Backend(None, namespace, name, problem=f"no Deployment's pods match the Service {namespace}/{name}")
