"""The tick loop: read the cluster (from the watch cache), advance the model, publish, persist, alert."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from k8sim import alerts, contract, gpus, model, rows, scenarios, sla, store, topology, traffic
from k8sim.kube import Kube, KubeError

from .cache import KINDS, ClusterCache, Informer
from .collector import SimulatorCollector, State, render
from .cost import CostCollector
from .inference import InferenceCollector
from .metrics_api import Usage, usage_from
from .node_exporter import NodeExporter, NodeExporterCollector
from .played import Played
from .registration import Registrar
from .settings import EngineSettings
from .sources import Memo, namespace_tenants, pod_specs, service_labels, workload_replicas

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How to read each of sla.RULE_METRICS from a service sample.
READ_METRIC = {
    "cpu_usage_percent": lambda s: s.cpu_percent,
    "memory_usage_percent": lambda s: s.memory_percent,
    "error_rate_percent": lambda s: 100 * s.error_rate,
    "response_time_ms": lambda s: s.latency_ms,
    "requests_per_second": lambda s: s.rps,
    "ready_pods": lambda s: s.ready_pods,
}
OPERATORS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
             "<=": lambda a, b: a <= b}


def applies(rule: rows.AlertRule, sample: model.ServiceSample) -> bool:
    """A rule scoped to a tenant or a service (namespace/name or bare name) watches only those."""
    if rule.tenant and sample.tenant != rule.tenant:
        return False
    return not rule.service or rule.service in (sample.key, sample.key.split("/", 1)[1])


class _Collected:
    """Families already collected this tick, rendered as a registry would be."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class Engine:
    def __init__(self, settings: EngineSettings):
        self.settings = settings
        # An accelerated clock outruns the cluster's own timers: background failures then play in the model.
        background = scenarios.background(settings.profile, settings.background) if settings.speed > 1 else None
        self.model = model.Model(settings.seed, background, settings.model_noise)
        self.state = State()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SimulatorCollector(self))
        self.registry.register(CostCollector(self))
        self.registry.register(InferenceCollector(self))
        self.node_exporter = NodeExporter()
        self.registry.register(NodeExporterCollector(self))
        self.kube = Kube(settings.kubeconfig, agent="k8sim-engine")
        self.cache = ClusterCache(self.kube) if settings.watch else None
        # Followed apart from the cache: the Scenario CRD may come later (the operator installs it).
        self.scenarios = Informer(self.kube, scenarios.API_VERSION, scenarios.KIND) if settings.watch else None
        # Keeps the metrics APIs registered while the engine runs (the app starts and stops it).
        self.registrar = Registrar(self.kube, settings) if settings.register_metrics_apis else None
        # The metrics add-ons users apply (prometheus-adapter, metrics-server, KEDA) that the engine plays.
        self.played = Played(self.kube)
        self._families: tuple[int, list[Metric]] = (-1, [])
        self._scrape_origin: float | None = None
        self.usage = Usage.empty()  # what the metrics APIs serve: the last tick's figures
        # Per-pod inputs, rebuilt only when a pod changes.
        self.specs, self.containers, self.services = Memo(), Memo(), Memo()
        self._rendered: tuple[int, bytes] = (-1, b"")
        self._render_lock = asyncio.Lock()
        self.redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5)
        self.pool: asyncpg.Pool | None = None
        start = settings.sim_start or dt.datetime.now(dt.UTC)
        self.start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
        self.ticks = 0
        self.last_snapshot: dt.datetime | None = None
        self.document: dict[str, Any] | None = None
        self._scenario_task: asyncio.Task[None] | None = None
        self._open: set[tuple[str, str]] | None = None  # (rule_id, subject) of the alerts open in the store
        self._open_synced = 0.0
        self._recent: dict[str, tuple[float, Any]] = {}
        self.replay: traffic.Replay | None = None  # the real traffic replayed (POST /monitoring/traffic)
        self._anchor: tuple[str, float] | None = None  # (replay id, simulated epoch seconds it began at)

    @property
    def step(self) -> float:
        """Simulated seconds per tick."""
        return self.settings.tick_seconds * self.settings.speed

    def sim_now(self) -> dt.datetime:
        # Time advances by whole ticks, so the same seed and cluster give the same series.
        return self.start + dt.timedelta(seconds=self.ticks * self.step)

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.stop()
        if self._scenario_task is not None:
            self._scenario_task.cancel()
            await asyncio.gather(self._scenario_task, return_exceptions=True)
        await self.kube.close()
        await self.redis.aclose()
        if self.pool is not None:
            await self.pool.close()

    async def run(self) -> None:
        if self.cache is not None:
            self.cache.start()
        if self.scenarios is not None:
            self._scenario_task = asyncio.create_task(self.scenarios.run(), name="watch Scenario")
        end = self.settings.sim_end
        end = None if end is None else end if end.tzinfo else end.replace(tzinfo=dt.UTC)
        while True:
            started = time.monotonic()
            if end is not None and self.sim_now() + dt.timedelta(seconds=self.step) > end:
                await asyncio.sleep(self.settings.tick_seconds)  # the bounded run is over: serve what it made
                continue
            try:
                await self.tick()
            except KubeError as exc:
                log.warning("tick skipped, cluster unavailable: %s", exc.message)
            except Exception:
                log.exception("tick failed")
            await asyncio.sleep(max(0.0, self.settings.tick_seconds - (time.monotonic() - started)))

    async def tick(self) -> dict[str, Any]:
        pods, nodes, deployments, statefulsets, namespaces = await self.cluster()
        self.ticks += 1
        now = self.sim_now()
        deployed = await self.recent("tenants", self.deployed_namespaces)
        tenants = {**deployed, **namespace_tenants(namespaces)}  # labels win
        specs = pod_specs(pods, nodes, tenants, self.specs)
        wall = dt.datetime.now(dt.UTC)
        pace = await self.recent("cluster_speed", lambda: topology.cluster_speed(self.kube)) or 1.0
        labels = service_labels(pods, self.services)
        overrides = await self.recent("load", self.load_overrides)
        factors = model.service_factors({s.service: s.tenant for s in specs}, overrides, time.time(),
                                        {k: model.annotation_factor(a) for k, (_, a) in labels.items()})
        replayed = await self.replayed(now)
        samples = self.model.tick(specs, now, self.step, labels, workload_replicas([*deployments, *statefulsets]),
                                  factors, scenarios.model_effects(await self.scenario_objects()), wall, replayed,
                                  self.settings.tick_seconds, pace)
        self.model.step_devices(gpus.inventory(nodes), self.step, gpus.faults(nodes))
        self.usage = usage_from(pods, nodes, self.model, samples, dt.datetime.now(dt.UTC),
                                self.settings.tick_seconds, self.containers)
        self.node_exporter.step(pods, nodes, self.usage, self.step)
        live = {p["metadata"]["uid"] for p in pods}
        self.specs.keep(live)
        self.containers.keep(live)
        self.services.keep(live)
        overall, per_tenant, windows = await self.persist(samples, now)
        document = contract.health_document(samples, now, overall, per_tenant)
        foreign = [f for f in self.registrar.view()["foreign"] if f["apiservice"] not in self.played.serving()] \
            if self.registrar is not None and self.registrar.foreign else []
        named = {f["apiservice"] for f in foreign}
        # A played add-on that does not run (an adapter whose config does not load) names its problem too.
        foreign += [{"apiservice": h.apiservice, "service": h.view()["service"], "available": "False",
                     "reason": h.problem} for h in self.played.holders.values()
                    if h.problem and h.backend.addon is not None and h.apiservice not in named]
        if foreign:
            # Only then: the dashboard's banner names the other backend (the document is otherwise the contract's).
            document["metrics_apis"] = {"foreign": foreign}
        state = State()
        state.pods, state.deployments, state.model, state.services = pods, deployments, self.model, samples
        state.sla = {"overall": overall[0]} if overall is not None else {}
        self.state = state
        self.document = document
        await self.play(deployments, pods)
        await self.publish(document)
        await self.save_snapshot(document, now)
        await self.alert(samples, now, windows,
                         alerts.cluster_alerts(pods, nodes, tenants, dt.datetime.now(dt.UTC))
                         + alerts.gpu_alerts(self.model.devices))
        return document

    async def play(self, deployments: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        """The add-ons the engine plays: who holds the metrics groups, and the series their queries read
        (collected from this tick only when some query reads them; the scrape then reuses them)."""
        if not self.settings.play_addons:
            return
        try:
            await self.played.refresh(deployments, pods)
        except KubeError as exc:
            log.warning("played add-ons not refreshed (the cluster said: %s)", exc.message)
            return
        if self.played.active:
            ticks = self.ticks
            families = await asyncio.to_thread(lambda: list(self.registry.collect()))
            self._families = (ticks, families)
            # Stamped on a regular grid, as a Prometheus scraping every tick_seconds would (see Played.now).
            if self._scrape_origin is None:
                self._scrape_origin = time.time() - ticks * self.settings.tick_seconds
            self.played.observe(families, self._scrape_origin + ticks * self.settings.tick_seconds)
        if self.played.keda.objects:
            await self.played.keda.poll()

    async def exposition(self) -> bytes:
        """The last tick in Prometheus' text format, rendered when first scraped (not every tick:
        with thousands of pods the render costs more than the tick itself)."""
        async with self._render_lock:
            if self._rendered[0] != self.ticks:
                ticks, families = self._families
                source: Any = _Collected(families) if ticks == self.ticks else self.registry
                self._rendered = (self.ticks, await asyncio.to_thread(render, source))
            return self._rendered[1]

    async def cluster(self) -> tuple[list[dict[str, Any]], ...]:
        """Pods, nodes, Deployments, StatefulSets and Namespaces (cache.KINDS, in that order): from the
        watch cache once it has synced, else (at start, or with watching off) by listing them."""
        if self.cache is not None and self.cache.synced:
            return tuple(self.cache.items(kind) for _, kind in KINDS)
        return tuple(await asyncio.gather(*(self.kube.list(av, kind) for av, kind in KINDS)))

    async def recent(self, name: str, read: Callable[[], Awaitable[T]]) -> T:
        """``read()``, reused for a real second: on a fast clock (many ticks a second) the SLA window
        sums, rules, tenants and load overrides are not read again every tick."""
        found = self._recent.get(name)
        if found is not None and (self.settings.tick_seconds < 1 and time.monotonic() - found[0] < 1):
            value: T = found[1]
            return value
        fresh = await read()
        self._recent[name] = (time.monotonic(), fresh)
        return fresh

    @staticmethod
    async def _sums(conn: asyncpg.Connection, now: dt.datetime, window: float
                    ) -> tuple[tuple[float, float], dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
        """Overall and per-tenant (good, total) over the SLA window, and overall per burn-rate window."""
        return (await store.window_sums(conn, now, window), await store.tenant_window_sums(conn, now, window),
                {name: await store.window_sums(conn, now, seconds) for name, seconds in sla.WINDOW_SECONDS.items()})

    @staticmethod
    async def _rules(pool: asyncpg.Pool) -> list[rows.AlertRule]:
        async with pool.acquire() as conn:
            return await store.list_alert_rules(conn)

    async def scenario_objects(self) -> list[dict[str, Any]]:
        """Scenarios (their model effects apply while Active): watched, else listed; none without the CRD."""
        if self.scenarios is not None:
            return self.scenarios.items()
        try:
            return await self.kube.list(scenarios.API_VERSION, scenarios.KIND)
        except KubeError:
            return []

    async def load_overrides(self) -> list[model.LoadOverride]:
        """Active load-control overrides (POST /monitoring/load) from Redis; none while it is down."""
        try:
            raw = await self.redis.hgetall(self.settings.load_key)
        except (aioredis.RedisError, OSError):
            return []
        found = []
        for scope, value in raw.items():
            try:
                found.append(model.LoadOverride.stored(scope, value))
            except ValueError as exc:
                log.warning("%s", exc)
        return found

    async def traffic(self) -> tuple[traffic.Replay | None, float | None]:
        """The replay in force and its stored anchor (simulated epoch seconds it began at). The curves are read
        again only when the replay's id changes; while Redis is down the last one read plays on."""
        key = self.settings.traffic_key
        try:
            replay_id, anchor = await self.redis.hmget(key, [traffic.ID_FIELD, traffic.ANCHOR_FIELD])
            if replay_id is None:
                self.replay = None
            elif self.replay is None or self.replay.id != (
                    replay_id.decode() if isinstance(replay_id, bytes) else str(replay_id)):
                raw = await self.redis.hget(key, traffic.REPLAY_FIELD)
                self.replay = traffic.Replay.stored(raw) if raw is not None else None
        except (aioredis.RedisError, OSError):
            return self.replay, None
        except ValueError as exc:
            log.warning("%s", exc)
            self.replay = None
        return self.replay, None if self.replay is None else traffic.anchor_of(anchor, self.replay.id)

    async def replayed(self, now: dt.datetime) -> dict[str, float]:
        """service key → the replayed traffic's requests per second at this tick. A replay plays from the first
        tick that sees it (its anchor, kept in Redis so a restarted engine on the same clock carries on)."""
        replay, stored = await self.recent("traffic", self.traffic)
        if replay is None:
            return {}
        sim = now.timestamp()
        if self._anchor is not None and self._anchor[0] == replay.id:
            start = self._anchor[1]
        elif stored is not None and stored <= sim:
            start = stored
        else:
            start = sim
            try:
                await self.redis.hset(self.settings.traffic_key, traffic.ANCHOR_FIELD,
                                      traffic.anchor_value(replay.id, start))
            except (aioredis.RedisError, OSError) as exc:
                log.warning("traffic replay's start not recorded: %s", exc)
        self._anchor = (replay.id, start)
        return replay.rps(replay.position(sim - start))

    # ------------------------------------------------------------------ outputs

    async def publish(self, document: dict[str, Any]) -> None:
        payload = json.dumps(document)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.settings.redis_key, payload, ex=self.settings.redis_ttl)
                pipe.publish(self.settings.redis_channel, payload)
                await pipe.execute()
        except (aioredis.RedisError, OSError) as exc:
            log.warning("Redis unavailable, snapshot not published: %s", exc)

    async def _pool(self) -> asyncpg.Pool | None:
        if self.pool is None:
            try:
                self.pool = await store.connect(self.settings.database_url, timeout=5)
                await store.migrate(self.pool)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("PostgreSQL unavailable: %s", exc)
                self.pool = None
        return self.pool

    async def deployed_namespaces(self) -> dict[str, str]:
        """namespace → tenant for the namespaces tenants' deploys created (empty while the store is down)."""
        pool = await self._pool()
        if pool is None:
            return {}
        try:
            async with pool.acquire() as conn:
                return await store.namespace_tenants(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("tenant namespaces not read: %s", exc)
            return {}

    async def persist(self, samples: list[model.ServiceSample], now: dt.datetime
                      ) -> tuple[tuple[float, str] | None, dict[str, tuple[float, str]],
                                 dict[str, tuple[float, float]]]:
        """Record this tick's samples; returns the overall (SLA %, status) over the SLA window
        (None while the store cannot be read), each tenant's, and the (good, total) sums of
        every burn-rate window, which the alerts reuse."""
        pool = await self._pool()
        if pool is None:
            return None, {}, {}
        target, window = self.settings.sla_target, self.settings.sla_window_seconds
        try:
            async with pool.acquire() as conn:
                await store.insert_samples(
                    conn, [(now, s.key, s.tenant, s.good, s.total, contract.service_health(s) != "unhealthy")
                           for s in samples])
                # Seven window sums (whole minutes from sla_minutes): on a fast clock once a real second.
                (good, total), by_tenant, windows = await self.recent("sums", lambda: self._sums(conn, now, window))
                if self.ticks % 200 == 0:
                    await store.prune_monitoring(conn, now - dt.timedelta(days=self.settings.retention_days))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not record samples: %s", exc)
            if self.pool is not None:
                self.pool.terminate()
            self.pool = None
            return None, {}, {}
        overall = sla.evaluate(good, total, target, windows)
        tenants = {}
        for tenant, (t_good, t_total) in by_tenant.items():
            result = sla.evaluate(t_good, t_total, target)
            tenants[tenant] = (result.percentage, result.status)
        return (overall.percentage, overall.status), tenants, windows

    async def save_snapshot(self, document: dict[str, Any], now: dt.datetime) -> None:
        """Keep one snapshot per `snapshot_every` simulated seconds for /monitoring/metrics/history."""
        since = None if self.last_snapshot is None else (now - self.last_snapshot).total_seconds()
        due = since is None or since >= self.settings.snapshot_every
        if not due or self.pool is None:
            return
        try:
            async with self.pool.acquire() as conn:
                await store.save_snapshot(conn, now, document)
            self.last_snapshot = now
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("snapshot not kept: %s", exc)

    async def alert(self, samples: list[model.ServiceSample], now: dt.datetime,
                    windows: dict[str, tuple[float, float]], cluster: list[alerts.Firing]) -> None:
        """Threshold rules per service, the built-in service and cluster alerts (``cluster``: pods
        and nodes in trouble) and the multi-window burn-rate alerts."""
        pool = self.pool
        if pool is None:
            return
        found: list[alerts.Firing] = []
        try:
            rules = await self.recent("rules", lambda: self._rules(pool))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("alert rules not read: %s", exc)
            rules = []
        by_service: dict[str, list[model.ServiceSample]] = {}
        by_tenant: dict[str | None, list[model.ServiceSample]] = {}
        for s in samples:
            by_service.setdefault(s.key, []).append(s)
            by_service.setdefault(s.key.split("/", 1)[1], []).append(s)
            by_tenant.setdefault(s.tenant, []).append(s)
        for rule in rules:
            read = READ_METRIC.get(rule.metric)
            compare = OPERATORS.get(rule.operator)
            if read is None or compare is None:
                continue
            # Only the samples a rule can apply to (thousands of rules must not cost rules times services).
            candidates = (by_service.get(rule.service, []) if rule.service
                          else by_tenant.get(rule.tenant, []) if rule.tenant else samples)
            for s in candidates:
                if applies(rule, s) and compare(value := float(read(s)), rule.threshold):
                    found.append(alerts.Firing(
                        str(rule.id), rule.name, rule.severity, s.key, s.tenant, value,
                        f"{rule.metric} {value:.2f} {rule.operator} {rule.threshold} on {s.key}"))
        found += [*alerts.service_alerts(samples), *cluster]
        for burn in sla.burn_alerts(windows, self.settings.sla_target):
            if burn.firing:
                found.append(alerts.Firing(
                    f"burn-rate:{burn.long_window}/{burn.short_window}",
                    f"SLO burn rate {burn.long_window}/{burn.short_window}", burn.severity, "", None, burn.long_rate,
                    f"error budget burning {burn.long_rate:.1f}x over {burn.long_window} and "
                    f"{burn.short_rate:.1f}x over {burn.short_window} (threshold {burn.threshold}x)"))
        firing = {(f.rule_id, f.subject) for f in found}
        # Only changes are written: an alert opens once and is resolved once (the store stays the truth:
        # the open set is re-read from it at start and every minute).
        resync = self._open is None or time.monotonic() - self._open_synced > 60
        try:
            async with pool.acquire() as conn:
                for f in found:
                    if resync or (f.rule_id, f.subject) not in (self._open or set()):
                        await store.fire_alert(conn, rule_id=f.rule_id, name=f.name, severity=f.severity,
                                               service=f.subject or None, tenant=f.tenant, value=f.value, at=now,
                                               message=f.message)
                if resync or (self._open or set()) - firing:
                    await store.resolve_alerts(conn, firing, now)
                if resync:
                    self._open_synced = time.monotonic()
                self._open = firing
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("alerts not evaluated: %s", exc)
