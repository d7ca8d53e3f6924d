"""The metrics add-ons the engine plays (:mod:`k8sim.played`): who holds each metrics group now, the
prometheus-adapter configuration it answers with, and the series that configuration's queries read.

The series are what a kube-prometheus Prometheus would hold: the engine's own exposition each tick,
with the ``job`` labels its scrape configs give, and the recording rules of the PrometheusRules users
applied, evaluated as Prometheus' rule manager would.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import Metric

from k8sim import adapter, played, promql, scenarios
from k8sim.kube import Kube, KubeError

from .keda import KedaPlayer

log = logging.getLogger(__name__)

APISERVICE = ("apiregistration.k8s.io/v1", "APIService")
PROMETHEUS_RULE = ("monitoring.coreos.com/v1", "PrometheusRule")
#: The ``job`` a kube-prometheus scrape gives each exporter's series (its ServiceMonitors' job labels).
JOBS = (("container_", "kubelet"), ("kube_", "kube-state-metrics"), ("node_", "node-exporter"),
        ("DCGM_", "dcgm-exporter"))
#: The fault labels the KWOK stages play a crash loop from (k8sim/cluster/stages/fault-pod-crash*.yaml).
FAULT_LABEL, FAULT_MESSAGE = "k8sim.io/fault", "k8sim.io/fault-message"


def job_of(name: str) -> str | None:
    for prefix, job in JOBS:
        if name.startswith(prefix):
            return job
    return None


@dataclasses.dataclass
class AdapterState:
    """One prometheus-adapter configuration as last read: the rules, or why they cannot be served."""

    resource_version: str
    rules: adapter.Adapter | None
    error: str | None
    #: The last relist (what discovery answers) and the store's generation it was made at.
    custom: list[adapter.CustomMetric] = dataclasses.field(default_factory=list)
    external: list[str] = dataclasses.field(default_factory=list)
    relisted_at: int = -1


@dataclasses.dataclass
class Holder:
    """The add-on holding a metrics group, and what it answers with."""

    group: str
    apiservice: str
    backend: played.Backend
    config: AdapterState | None = None

    @property
    def problem(self) -> str | None:
        if self.backend.problem:
            return self.backend.problem
        if self.config is not None and self.config.error:
            return self.config.error
        return None

    def view(self) -> dict[str, Any]:
        b = self.backend
        return {"group": self.group, "apiservice": self.apiservice,
                "addon": str(b.addon) if b.addon else None, "service": f"{b.namespace}/{b.service}",
                "deployment": b.deployment, "config": f"{b.namespace}/{b.config_map}:{b.config_key}"
                if b.config_map else None, "problem": self.problem}


class Played:
    """What the engine plays this tick; :meth:`refresh` reads the cluster, :meth:`observe` the series."""

    def __init__(self, kube: Kube, *, retention: float = 900.0, clock: Callable[[], float] = time.time):
        self.kube, self.clock = kube, clock
        #: (store time, wall time) of the last observe: queries run at the store's "now" (see :meth:`now`).
        self._observed: tuple[float, float] | None = None
        self.store = promql.Store(retention)
        self.keda = KedaPlayer(kube, self.store, self.now)
        #: The engine's CA (PEM): what an APIService that verifies its backend must trust.
        self.ca_bundle: bytes | None = None
        self.holders: dict[str, Holder] = {}
        self._configs: dict[tuple[str, str, str], AdapterState] = {}
        self.recording: list[tuple[str, promql.Expr, dict[str, str]]] = []
        self.rule_errors: list[str] = []
        self._names: set[str] | None = set()
        self._crashing: set[tuple[str, str]] = set()
        self._seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    # ------------------------------------------------------------------ reading the cluster

    @property
    def active(self) -> bool:
        """Anything to keep series for: an adapter's rules or recording rules."""
        return any(h.config is not None and h.config.rules is not None for h in self.holders.values()) or \
            bool(self.recording) or bool(self.keda.objects)

    def now(self) -> float:
        """The store's present: the last observe's time plus the wall time since. The engine stamps samples
        on a regular grid (a scrape every tick), so irate over counters the model advances by whole steps
        gives the model's own rates, not the jitter of when each tick happened to run."""
        if self._observed is None:
            return float(self.clock())
        at, wall = self._observed
        return at + max(0.0, float(self.clock()) - wall)

    def serving(self) -> set[str]:
        """APIServices of add-ons the engine plays and answers for (not crash-looping)."""
        return {h.apiservice for h in self.holders.values() if h.backend.addon is not None and not h.problem}

    def holder(self, group: str) -> Holder | None:
        return self.holders.get(group)

    def listing(self, group: str) -> AdapterState | None:
        """The last relist of the adapter holding ``group`` (what its discovery answers from)."""
        held = self.holders.get(group)
        return held.config if held is not None else None

    def adapter(self, group: str) -> tuple[Holder, adapter.Adapter | None] | None:
        """The prometheus-adapter holding ``group`` and its rules (None rules: it is crash-looping)."""
        held = self.holders.get(group)
        if held is None or held.backend.addon != played.Addon.PROMETHEUS_ADAPTER:
            return None
        return held, held.config.rules if held.config is not None else None

    async def refresh(self, deployments: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> None:
        apiservices = [a for a in await self.kube.list(*APISERVICE)
                       if (a.get("spec") or {}).get("group") in played.METRICS_GROUPS and not played.is_engines(a)
                       and played.service_ref(a) is not None]
        holders: dict[str, Holder] = {}
        if apiservices:
            services = await self.kube.list("v1", "Service")
            deployments = list(deployments)
            for apiservice in sorted(apiservices, key=lambda a: a["metadata"]["name"]):
                backend = played.backend_of(apiservice, services, deployments)
                if backend is None:
                    continue
                group = apiservice["spec"]["group"]
                current = holders.get(group)
                if current is not None and current.backend.addon is not None:
                    continue  # several versions of a group: the one an add-on backs answers for all
                holder = Holder(group, apiservice["metadata"]["name"], backend)
                if backend.addon == played.Addon.KEDA:
                    await self._trust(apiservice)
                if backend.addon == played.Addon.PROMETHEUS_ADAPTER and backend.config_map:
                    holder.config = await self._config(backend)
                holders[group] = holder
        self.holders = holders
        await self.keda.refresh(deployments)
        if any(h.config is not None and h.config.rules is not None for h in holders.values()) or self.keda.objects:
            await self._recording_rules()
        else:  # nothing reads the series they would record: no listing, no evaluation each tick
            self.recording, self.rule_errors = [], []
        self._names = self._needed()
        await self._crash_loops(pods)

    async def _trust(self, apiservice: Mapping[str, Any]) -> None:
        """KEDA's operator puts its own CA into its APIService's caBundle (its cert rotator); the engine
        plays that operator, so the bundle is the engine's CA."""
        spec = apiservice.get("spec") or {}
        if self.ca_bundle is None or spec.get("insecureSkipTLSVerify"):
            return
        bundle = base64.b64encode(self.ca_bundle).decode()
        if spec.get("caBundle") != bundle:
            await self.kube.patch(*APISERVICE, apiservice["metadata"]["name"], {"spec": {"caBundle": bundle}})

    async def _config(self, backend: played.Backend) -> AdapterState:
        assert backend.config_map is not None and backend.config_key is not None
        key = (backend.namespace, backend.config_map, backend.config_key)
        config_map = await self.kube.get("v1", "ConfigMap", backend.config_map, backend.namespace)
        if config_map is None:
            return AdapterState("", None, f"configmap \"{backend.config_map}\" not found: the adapter's pods wait "
                                          f"in ContainerCreating (the volume cannot mount)")
        version = str(config_map["metadata"].get("resourceVersion", ""))
        known = self._configs.get(key)
        if known is not None and known.resource_version == version:
            return known
        text = (config_map.get("data") or {}).get(backend.config_key)
        if text is None:
            state = AdapterState(version, None, f"unable to load metrics discovery config: open "
                                                f"{backend.config_key}: no such file or directory (the "
                                                f"ConfigMap {backend.config_map} has no key {backend.config_key})")
        else:
            try:
                state = AdapterState(version, adapter.Adapter(adapter.load(text)), None)
            except adapter.AdapterConfigError as exc:
                state = AdapterState(version, None, str(exc))
        if state.error:
            log.warning("played_adapter_config_error configmap=%s/%s error=%r", backend.namespace,
                        backend.config_map, state.error)
        self._configs[key] = state
        return state

    async def _recording_rules(self) -> None:
        """The recording rules of every PrometheusRule (none when the CRD is not installed)."""
        try:
            rules = await self.kube.list(*PROMETHEUS_RULE)
        except KubeError:
            self.recording = []
            return
        recording, errors = [], []
        for obj in rules:
            meta = obj.get("metadata") or {}
            for group in (obj.get("spec") or {}).get("groups") or []:
                for rule in group.get("rules") or []:
                    if not isinstance(rule, Mapping) or not rule.get("record"):
                        continue
                    try:
                        expr = promql.parse(str(rule.get("expr", "")))
                    except promql.PromQLError as exc:
                        errors.append(f"{meta.get('namespace')}/{meta.get('name')} {rule['record']}: {exc}")
                        continue
                    labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
                    recording.append((str(rule["record"]), expr, labels))
        self.recording, self.rule_errors = recording, errors

    def _needed(self) -> set[str] | None:
        """Metric names the queries read (None: every series, a query selects by a name regex)."""
        names: set[str] = set()
        exprs: list[Any] = [e for _, e, _ in self.recording] + self.keda.queries()
        for held in self.holders.values():
            if held.config is not None and held.config.rules is not None:
                texts = adapter_queries(held.config.rules.config)
                if texts is None:
                    return None
                exprs.extend(texts)
        for expr in exprs:
            try:
                found = promql.metric_names(expr)
            except promql.PromQLError:
                return None
            if found is None:
                return None
            names |= found
        return names

    async def _crash_loops(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """An adapter whose configuration does not load exits at start, as the real one does: its pods
        crash-loop (the KWOK fault stages) with the error as the container's last words, until the
        ConfigMap is fixed."""
        broken: dict[tuple[str, str], str] = {}
        for held in self.holders.values():
            if held.config is not None and held.config.error and held.backend.deployment:
                broken[(held.backend.namespace, held.backend.deployment)] = held.config.error
        for pod in pods:
            meta = pod.get("metadata") or {}
            workload = scenarios.workload_of(pod)
            if workload is None or workload[0] != "Deployment":
                continue
            key = (str(meta.get("namespace")), workload[1])
            labels = meta.get("labels") or {}
            error = broken.get(key)
            try:
                if error is not None and labels.get(FAULT_LABEL) != "PodCrash":
                    await self.kube.patch("v1", "Pod", meta["name"], {"metadata": {
                        "labels": {FAULT_LABEL: "PodCrash"},
                        "annotations": {FAULT_MESSAGE: error[:4000], "k8sim.io/fault-after": "1s"}}},
                        namespace=key[0])
                    self._crashing.add((key[0], meta["name"]))
                elif error is None and (key[0], meta["name"]) in self._crashing:
                    # The recover stage restarts the container, passes readiness and drops the fault marks.
                    await self.kube.patch("v1", "Pod", meta["name"], {"metadata": {
                        "labels": {FAULT_LABEL: "Recovering"}}}, namespace=key[0])
                    self._crashing.discard((key[0], meta["name"]))
            except KubeError as exc:
                log.info("played adapter pod %s/%s not patched: %s", key[0], meta.get("name"), exc.message)

    # ------------------------------------------------------------------ the series

    def observe(self, families: Iterable[Metric], now: float | None = None) -> None:
        """Keep this tick's samples the queries read, evaluate the recording rules on them, mark the series
        that ended stale (as Prometheus does when a target goes), and relist the adapters' metrics."""
        at = self.clock() if now is None else now
        self._observed = (at, self.clock())
        names = self._names
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

        def keep(name: str, labels: dict[str, str], value: float) -> None:
            self.store.add(name, labels, at, value)
            seen.add((name, tuple(sorted(labels.items()))))

        for family in families:
            for sample in family.samples:
                if names is not None and sample.name not in names:
                    continue
                labels = dict(sample.labels)
                job = job_of(sample.name)
                if job == "dcgm-exporter":
                    # Scraped through a ServiceMonitor, dcgm-exporter's own pod/namespace/container labels clash
                    # with the target's and Prometheus keeps them as exported_* (what NVIDIA's adapter rules read).
                    for label in ("namespace", "pod", "container"):
                        if label in labels:
                            labels[f"exported_{label}"] = labels.pop(label)
                if job is not None:
                    labels.setdefault("job", job)
                keep(sample.name, labels, float(sample.value))
        for record, expr, extra in self.recording:
            try:
                results = promql.evaluate(expr, self.store, at)
            except promql.PromQLError:
                continue
            for labels, value in results:
                keep(record, {**labels, **extra}, value)
        for name, key in self._seen - seen:
            self.store.mark_stale(name, dict(key), at)
        self._seen = seen
        self.store.prune(at)
        for held in self.holders.values():
            config = held.config
            if config is not None and config.rules is not None and config.relisted_at != self.store.generation:
                # The adapter's relist (--metrics-relist-interval): what its discovery lists, what it answers.
                # Only when a series came or went: the listing depends on which series exist, not their values.
                config.custom = config.rules.custom_metrics(self.store)
                config.external = config.rules.external_metrics(self.store)
                config.relisted_at = self.store.generation

    def keda_holder(self, group: str) -> KedaPlayer | None:
        """KEDA's metrics server, when it holds ``group`` (external metrics)."""
        held = self.holders.get(group)
        return self.keda if held is not None and held.backend.addon == played.Addon.KEDA else None

    def view(self) -> dict[str, Any]:
        return {"holders": [h.view() for _, h in sorted(self.holders.items())],
                "recording_rules": len(self.recording), "recording_rule_errors": self.rule_errors,
                "keda": {"operator": self.keda.installed, "scaled_objects": len(self.keda.objects)}}


_ACTION = re.compile(r"<<-?\s*\.(\w+)\s*-?>>")


def adapter_queries(config: adapter.Config) -> list[str] | None:
    """Every query an adapter configuration can send, its template actions filled with stand-ins, for the
    metric names they read (None: a template the stand-ins do not fit, so every series is kept)."""
    queries: list[str] = []
    rules = [*config.rules, *config.external_rules]
    for rule in rules:
        queries.append(rule.series_query)
    series = sorted({n for rule in rules for n in (promql.metric_names(rule.series_query) or {"__any__"})})
    templates = [rule.metrics_query for rule in rules if rule.metrics_query]
    if config.resource_rules is not None:
        for resource in (config.resource_rules.cpu, config.resource_rules.memory):
            templates += [q for q in (resource.container_query, resource.node_query) if q]
    stand_ins = {"LabelMatchers": '__k8sim__="x"', "GroupBy": "__k8sim__", "GroupBySlice": "__k8sim__",
                 "Window": "5m"}
    for template in templates:
        for name in series or ["__any__"]:
            def fill(match: re.Match[str], name: str = name) -> str:
                return name if match.group(1) == "Series" else stand_ins.get(match.group(1), "__k8sim__")
            text = _ACTION.sub(fill, template)
            if "<<" in text:
                return None
            queries.append(text.replace('{__k8sim__="x",', "{").replace(',__k8sim__="x"}', "}")
                           .replace('{__k8sim__="x"}', ""))
            if "<<.Series>>" not in template:
                break
    return queries
