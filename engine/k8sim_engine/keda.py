"""KEDA as the engine plays it (:mod:`k8sim.keda`): once KEDA's operator is applied, every ScaledObject gets
the HPA KEDA would create, its triggers' queries are polled over the engine's series at their polling
interval, the target scaled to and from zero (activation, cooldown), the status written with KEDA's
conditions; and KEDA's metrics server (its APIService, reached through the egress proxy) answers the HPA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from k8sim import keda, played, promql, scenarios
from k8sim.kube import Kube, KubeError

log = logging.getLogger(__name__)

SCALED_OBJECT = (keda.KEDA_API, "ScaledObject")
#: KEDA's operator writes as this field manager (what kubectl shows as the HPA's manager).
FIELD_MANAGER = "keda"


@dataclasses.dataclass
class Polled:
    """One ScaledObject as last polled."""

    at: float
    generation: Any
    so: keda.ScaledObject | None
    outcomes: dict[int, float | keda.KedaError]


class KedaPlayer:
    """The KEDA operator's loop and its metrics server's answers, over :class:`Played`'s store."""

    def __init__(self, kube: Kube, store: promql.Store, clock: Callable[[], float] = time.time):
        self.kube, self.store, self.clock = kube, store, clock
        self.installed = False
        self.objects: list[dict[str, Any]] = []
        self.polled: dict[str, Polled] = {}  # by uid

    def queries(self) -> list[str]:
        """The prometheus triggers' queries (what the store must keep series for)."""
        found = []
        for obj in self.objects:
            for trigger in (obj.get("spec") or {}).get("triggers") or []:
                if isinstance(trigger, Mapping) and trigger.get("type") == "prometheus":
                    query = (trigger.get("metadata") or {}).get("query")
                    if isinstance(query, str):
                        found.append(query)
        return found

    async def refresh(self, deployments: Iterable[Mapping[str, Any]]) -> None:
        """Whether KEDA's operator is applied, and the ScaledObjects (none when the CRD is missing)."""
        self.installed = played.keda_operator_present(deployments)
        if not self.installed:
            self.objects = []
            return
        try:
            self.objects = await self.kube.list(*SCALED_OBJECT)
        except KubeError:
            self.objects = []

    def evaluate(self, trigger: keda.PrometheusTrigger, at: float) -> float | keda.KedaError:
        try:
            return keda.trigger_value(promql.evaluate(trigger.query, self.store, at), trigger)
        except promql.PromQLError:
            return keda.query_failed()
        except keda.KedaError as exc:
            return exc

    async def poll(self) -> None:
        """One pass: each ScaledObject whose polling interval has passed is reconciled and polled."""
        now = self.clock()
        live = set()
        for obj in self.objects:
            meta = obj.get("metadata") or {}
            uid = str(meta.get("uid", ""))
            live.add(uid)
            known = self.polled.get(uid)
            interval = known.so.polling_interval if known is not None and known.so is not None else 0
            if known is not None and now - known.at < interval and meta.get("generation") == known.generation:
                continue  # polled within its interval, and its spec has not changed since
            try:
                await self._reconcile(obj, now)
            except KubeError as exc:
                log.warning("keda: ScaledObject %s/%s not reconciled: %s", meta.get("namespace"), meta.get("name"),
                            exc.message)
        self.polled = {uid: p for uid, p in self.polled.items() if uid in live}

    async def _reconcile(self, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            so = keda.parse_scaled_object(obj)
        except keda.KedaError as exc:
            self.polled[meta["uid"]] = Polled(now, meta.get("generation"), None, {})
            await self._status(obj, keda.status_for(obj, error=exc))
            return
        patch = keda.label_patch(so)
        if patch is not None:
            await self.kube.patch(*SCALED_OBJECT, name, patch, namespace=namespace)
        await self.kube.apply(keda.hpa_for(so), field_manager=FIELD_MANAGER)
        target = await self.kube.get(so.target.api_version, so.target.kind, so.target.name, namespace)
        if target is None:
            missing = keda.KedaError(f"{so.target.resource}.{so.target.group} \"{so.target.name}\" not found"
                                     if so.target.group else f"{so.target.resource} \"{so.target.name}\" not found")
            self.polled[meta["uid"]] = Polled(now, meta.get("generation"), so, {})
            await self._status(obj, keda.status_for(obj, so=so, error=missing))
            return
        replicas = int((target.get("spec") or {}).get("replicas", 1))
        outcomes: dict[int, float | keda.KedaError] = {
            t.index: self.evaluate(t, now) for t in so.triggers if isinstance(t, keda.PrometheusTrigger)}
        active, error, names = keda.activity(so, outcomes)
        previous = obj.get("status") or {}
        last = _parse(previous.get("lastActiveTime"))
        hpa = await self.kube.get("autoscaling/v2", "HorizontalPodAutoscaler", so.hpa_name, namespace)
        scaling = next((c for c in ((hpa or {}).get("status") or {}).get("conditions") or []
                        if c.get("type") == "ScalingActive"), None)
        decision = keda.decide(so, dt.datetime.fromtimestamp(now, dt.UTC), active, replicas, last, error=error,
                               active_triggers=names, hpa_scaling_active=scaling)
        if decision.scale_to is not None and decision.scale_to != replicas:
            await self.kube.patch(so.target.api_version, so.target.kind, so.target.name,
                                  {"spec": {"replicas": decision.scale_to}}, namespace=namespace)
            log.info("keda: %s/%s scaled %s from %d to %d", namespace, name, so.target.name, replicas,
                     decision.scale_to)
        for index, outcome in outcomes.items():
            if isinstance(outcome, keda.KedaError):
                await self._event(obj, "Warning", "KEDAScalerFailed", str(outcome))
                log.info("keda: %s/%s trigger %d: %s", namespace, name, index, outcome)
        if decision.event is not None:
            await self._event(obj, *decision.event)
        self.polled[meta["uid"]] = Polled(now, meta.get("generation"), so, outcomes)
        await self._status(obj, keda.status_for(obj, so=so, decision=decision,
                                                original_replica_count=replicas))

    async def _status(self, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
        if status == (obj.get("status") or {}):
            return
        meta = obj["metadata"]
        await self.kube.patch(*SCALED_OBJECT, meta["name"], {"status": status}, namespace=meta["namespace"],
                              subresource="status")

    async def _event(self, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        event = scenarios.event(obj, reason, message, dt.datetime.now(dt.UTC), "keda-operator",
                                kind="ScaledObject", api_version=keda.KEDA_API, type_=kind)
        try:
            await self.kube.create(event)
        except KubeError as exc:
            log.info("keda: event not recorded: %s", exc.message)

    # ------------------------------------------------------------------ KEDA's metrics server

    def external(self, namespace: str, metric: str, selector: str | None) -> dict[str, Any]:
        """What KEDA's metrics server answers for ``s<i>-prometheus`` (its value now); KedaError when it
        would answer an error."""
        objects = []
        for obj in self.objects:
            try:
                objects.append(keda.parse_scaled_object(obj))
            except keda.KedaError:
                continue
        _, trigger = keda.select_metric(objects, namespace, metric, selector)
        value = self.evaluate(trigger, self.clock())
        if isinstance(value, keda.KedaError):
            raise keda.KedaError(keda.metric_error_message(metric), reason="MetricsServerError")
        return keda.external_metric_list([keda.external_metric_value(metric, value, dt.datetime.now(dt.UTC))])

    def resource_list(self) -> dict[str, Any]:
        names = sorted({n for obj in self.objects for n in _names(obj)})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "external.metrics.k8s.io/v1beta1",
                "resources": [{"name": n, "singularName": "", "namespaced": True,
                               "kind": "ExternalMetricValueList", "verbs": ["get"]} for n in names]}


def _names(obj: Mapping[str, Any]) -> list[str]:
    try:
        return keda.external_metric_names(keda.parse_scaled_object(obj))
    except keda.KedaError:
        return []


def _parse(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
