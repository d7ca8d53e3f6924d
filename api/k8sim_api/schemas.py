"""Request and response bodies of the contract, with the examples /docs shows."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from k8sim import removal, rows
from k8sim.sla import RULE_METRICS

#: A tenant id is matched against label values, so it must be one (63 characters at most).
TENANT_ID: dict[str, Any] = {"min_length": 1, "max_length": 63,
                             "pattern": r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
                             "description": "ECP-AI tenant id (a label value).", "examples": ["tenant-123"]}
#: Object and namespace names (DNS subdomains; namespaces are DNS labels, a subset).
OBJECT_NAME: dict[str, Any] = {"min_length": 1, "max_length": 253,
                               "pattern": r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$"}  # RBAC names have ':'

NAMESPACE: dict[str, Any] = {"min_length": 1, "max_length": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
#: A kind as users type it: Pod, pods, deploy, HorizontalPodAutoscaler.
KIND: dict[str, Any] = {"min_length": 1, "max_length": 100, "pattern": r"^[A-Za-z][A-Za-z0-9]*$"}



def _date_time_text(value: Any) -> Any:
    """Only an ISO 8601 date-time, as the schema says: pydantic alone also reads "0.5" as a Unix time."""
    if not isinstance(value, str) or not re.match(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", value):
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-28T09:00:00Z")
    return value


DateTime = Annotated[dt.datetime, BeforeValidator(_date_time_text)]

YamlText = Annotated[str, StringConstraints(min_length=1)]
#: Free text that is stored: printable, no control characters (PostgreSQL refuses NUL).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

MANIFEST_EXAMPLE = (
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ecp-ai-tenant-123\n  labels:\n"
    "    ecp.ai/tenant-id: tenant-123\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: callbot-pod\n"
    "  namespace: ecp-ai-tenant-123\nspec:\n  containers:\n  - name: callbot\n    image: ecp-ai/callbot:1.0\n"
)


class ManifestRequest(BaseModel):
    """A manifest as ECP-AI sends it: one YAML string, or an object of file name → YAML."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"manifest": MANIFEST_EXAMPLE, "tenant_id": "tenant-123", "deployment_mode": "demo"},
        {"manifest": {"01-namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ecp-ai-t1\n"},
         "tenant_id": "t1"},
    ]})

    manifest: YamlText | Annotated[dict[str, str], Field(min_length=1)] = Field(
        description="Multi-document YAML, or file name → YAML (not empty).")
    tenant_id: str | None = Field(None, **{k: v for k, v in TENANT_ID.items() if k != "examples"})
    deployment_mode: str | None = Field(None, max_length=64, pattern=PRINTABLE,
                                        description="ECP-AI's mode (demo, production …).")
    namespace: str | None = Field(None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                  description="Namespace of objects that name none, like kubectl -n "
                                              "(default: the tenant's namespace in the manifest, else default).")
    wait: bool = Field(True, strict=True, description="Deploy only: wait for readiness (false answers at once).")
    create_namespace: bool = Field(False, strict=True,
                                   description="Create the target namespace when it does not exist and the "
                                               "manifest has none (like helm's --create-namespace).")


class ParseResponse(BaseModel):
    status: str = "success"
    resources: list[dict[str, Any]]
    count: int
    tenant_id: str | None = None
    valid: bool = True
    errors: list[dict[str, Any]] = []
    notes: list[str] = []
    message: str | None = None


class ResourceStatus(BaseModel):
    id: str = Field(examples=["default/Pod/callbot-pod"])
    name: str
    namespace: str
    kind: str
    status: str = Field(examples=["Running"])
    created_at: str | None = Field(None, examples=["2024-01-15T10:30:00Z"])
    deployment_time: float | None = Field(None, examples=[3.2])
    ready: bool | None = None
    reason: str | None = None
    api_version: str | None = None


class DeployResponse(BaseModel):
    status: str = Field(examples=["completed"])
    deployed_count: int
    failed_count: int
    tenant_id: str | None = None
    deployment_id: str
    deployment_time: float | None = None
    resources: list[ResourceStatus]
    message: str | None = None


class ErrorResponse(BaseModel):
    status: str = "error"
    message: str
    errors: list[dict[str, Any]] = []


#: Bodies that are not JSON (or not UTF-8) at all.
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body could not be parsed"}}


# --------------------------------------------------------------------------- responses
# Every response model keeps fields it does not name (extra="allow"): the contract's documents
# are open, and a model here documents what clients may rely on without dropping the rest.


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ServiceInfo(Out):
    name: str = Field(examples=["k8s-simulator"])
    version: str = Field(examples=["0.1.0"])
    status: str = Field(examples=["running"])
    docs: str = "/docs"
    openapi: str = "/openapi.json"
    health: str = "/health"
    dashboard: str = Field("/ui/", description="The dashboard (browsers opening / are sent there)")


class ApiServiceProblem(Out):
    name: str = Field(examples=["v1beta1.metrics.k8s.io"])
    reason: str = Field(examples=["ServiceNotFound"])
    message: str = Field(examples=['service/prometheus-adapter in "monitoring" is not present'])


class HealthStatus(Out):
    status: str = Field(description="healthy, degraded (an aggregated API is unavailable) or unhealthy",
                        examples=["healthy"])
    checks: dict[str, str] = Field(examples=[{"kubernetes": "ok", "postgresql": "ok"}])
    unavailable_apiservices: list[ApiServiceProblem] | None = None
    message: str | None = None


class ReplicaCounts(Out):
    desired: int = Field(examples=[2])
    ready: int | None = Field(None, examples=[2])


class ResourceItem(Out):
    id: str = Field(examples=["ecp-ai-t1/Deployment/callbot"])
    name: str
    namespace: str = Field(description='"" for cluster-scoped objects')
    kind: str
    api_version: str | None = None
    status: str = Field(examples=["Available"])
    ready: bool
    created_at: str | None = None
    tenant_id: str | None = None
    node: str | None = None
    replicas: ReplicaCounts | None = None
    reason: str | None = Field(None, description="Why it is not ready, in the cluster's words",
                               examples=["FailedScheduling: 0/18 nodes are available: 10 Insufficient "
                                         "nvidia.com/gpu. (2 pods pending, 2 unschedulable)"])


class ResourceList(Out):
    resources: list[ResourceItem]
    count: int
    tenant_id: str | None = None
    status: str = Field(description="The tenant's latest deploy: pending, deploying, completed, failed "
                                    "(not_found without one)", examples=["completed"])
    deployment_id: str | None = None
    message: str | None = None


class HistoryStep(Out):
    id: int = Field(description="Recording order; pass the last one as after_id for the next page")
    uid: str
    api_version: str = Field(examples=["v1"])
    kind: str = Field(examples=["Pod"])
    namespace: str = Field(description="Empty for cluster-scoped objects", examples=["ecp-ai-t1"])
    name: str = Field(examples=["voicebot-7d9f-x2k4q"])
    tenant_id: str | None
    transition: str = Field(description="created, scheduled, the new phase in lower case (pending, running, "
                                        "terminating, bound …), ready, not_ready, reason, restarted, scaled, "
                                        "updated, deleted, or event (a Kubernetes Event about the object)",
                            examples=["scheduled"])
    detail: dict[str, Any] = Field(examples=[{"node": "cpu-3"}])
    resource_version: str
    occurred_at: str = Field(description="When it happened, where the object says so; else when it was seen")
    observed_at: str
    reconciled: bool = Field(description="Found by a relist after a gap (operator down), not by a watch event")

    @classmethod
    def of(cls, step: rows.Step) -> HistoryStep:
        return cls(id=step.id, uid=step.uid, api_version=step.api_version, kind=step.kind, namespace=step.namespace,
                   name=step.name, tenant_id=step.tenant, transition=step.transition, detail=step.detail,
                   resource_version=step.resource_version, occurred_at=step.occurred_at.isoformat(),
                   observed_at=step.observed_at.isoformat(), reconciled=step.reconciled)


class History(Out):
    steps: list[HistoryStep]
    count: int
    next_after_id: int | None = Field(description="after_id for the next page; null when this one was not full")


class Deleted(Out):
    status: str = "success"
    message: str = Field(examples=["Namespace ecp-ai-t1 deleted"])
    id: str = Field(examples=["/Namespace/ecp-ai-t1"])


class PendingObject(Out):
    id: str = Field(examples=["/Namespace/ecp-ai-t1"])
    reason: str | None = Field(None, examples=["NamespaceDeletionDiscoveryFailure: Discovery failed for some "
                                               "groups, 1 failing: unable to retrieve the complete list of "
                                               "server APIs: metrics.k8s.io/v1beta1: stale GroupVersion "
                                               "discovery: metrics.k8s.io/v1beta1"])


class TenantDeleted(Out):
    status: str = "success"
    tenant_id: str
    deleted_count: int = Field(description="Objects already gone when the answer left")
    pending_count: int = Field(description="Objects not gone yet (a terminating namespace's contents count until "
                                           "it is gone); their deletion goes on")
    resources: list[str] = Field(description="Every object deleted, by id")
    pending: list[PendingObject] | None = Field(None, description="The namespaces still terminating, and any "
                                                                  "other object still there, with why")
    message: str | None = None

    @classmethod
    def of(cls, done: removal.Removal) -> TenantDeleted:
        return cls(tenant_id=done.tenant, deleted_count=done.deleted_count, pending_count=done.pending_count,
                   resources=done.resources, message=done.message,
                   pending=[PendingObject(id=p.id, reason=p.reason) for p in done.pending] or None)


class PodSummary(Out):
    name: str
    status: str | None
    image: str | None
    ready: bool
    restarts: int
    created: str | None
    node: str | None


class RolloutReplicas(Out):
    desired: int
    ready: int
    available: int
    updated: int


class ServiceRollout(Out):
    name: str = Field(examples=["callbot"])
    namespace: str
    kind: str = Field(examples=["Deployment"])
    desiredImage: str | None = None  # the contract spells these in camelCase
    currentImage: str | None = None
    replicas: RolloutReplicas
    pods: list[PodSummary]
    deploymentStatus: str = Field(examples=["completed"])
    lastUpdated: str | None = None
    reason: str | None = None


class CpuFigures(Out):
    usage_percent: float = Field(examples=[45.2])
    load_1m: float = Field(examples=[1.8])


class MemoryFigures(Out):
    usage_mb: float = Field(examples=[512.3])
    usage_percent: float = Field(examples=[25.1])


class NetworkFigures(Out):
    requests_per_second: float = Field(examples=[150.5])
    response_time_ms: float = Field(examples=[120.3])
    error_rate_percent: float = Field(examples=[0.05])


class ServiceHealth(Out):
    status: str = Field(examples=["healthy"])
    uptime_seconds: int = Field(examples=[86400])


class ServiceReplicas(Out):
    desired: int
    ready: int
    available: int


class GpuFigures(Out):
    count: int = Field(examples=[2], description="GPUs the service's pods ask for")
    utilization_percent: float = Field(examples=[41.5], description="Mean over those GPUs (DCGM_FI_DEV_GPU_UTIL)")
    memory_used_mb: float = Field(examples=[6800.0], description="Framebuffer used, summed (DCGM_FI_DEV_FB_USED)")


class ServiceMetrics(Out):
    cpu: CpuFigures
    memory: MemoryFigures
    network: NetworkFigures
    gpu: GpuFigures | None = Field(None, description="Present when the service's pods use GPUs")
    health: ServiceHealth
    replicas: ServiceReplicas | None = Field(None, description="Absent only in snapshots kept by versions "
                                                               "before 0.2")
    tenant_id: str | None = None
    profile: str | None = None


class Summary(Out):
    overall_health: str = Field(examples=["healthy"])
    sla_percentage: float | None = Field(description="null while the SLA cannot be measured", examples=[99.972])
    sla_status: str = Field(examples=["meeting"])
    total_services: int
    healthy_services: int
    total_requests_per_second: float | None = Field(None, examples=[840.2])
    average_response_time: float | None = Field(None, description="ms, weighted by requests", examples=[96.4])
    degraded: bool | None = None


class HealthDocument(Out):
    timestamp: str = Field(examples=["2024-01-15T10:30:00Z"])
    services: dict[str, ServiceMetrics] = Field(description="Keyed namespace/name")
    summary: Summary


class TenantDocument(HealthDocument):
    tenant_id: str


class MetricsDocument(HealthDocument):
    tenants: dict[str, Summary]


class HistoryPoint(Out):
    timestamp: str
    data: HealthDocument


class HistoryDocument(Out):
    status: str = "success"
    hours: float
    service_filter: str | None
    data_points: int
    history: list[HistoryPoint]


class SlaStatus(Out):
    status: str = Field(examples=["meeting"])
    percentage: float = Field(examples=[99.972])
    target: float = Field(examples=[99.5])
    data_points: int = Field(examples=[60])
    healthy_points: int = Field(examples=[60])
    error_budget_remaining: float | None = None
    burn_rates: dict[str, float] = {}
    window_seconds: float | None = None
    tenant_id: str | None = None


class ReportPeriod(Out):
    period: str
    availability: float
    requests: int
    failed_requests: int
    minutes: int
    status: str


class ReportSpan(Out):
    """The last ``days`` as recorded (``coverage``: the share of its minutes that have samples)."""

    days: float
    availability: float
    requests: int
    failed_requests: int
    samples: int
    coverage: float
    status: str


class SlaCost(Out):
    """What the tenant's pods (or, without a tenant, every pod and the idle rest) cost over the report's
    last ``days`` (30 without), by wall clock up to now: /cluster/cost's figures."""

    window: dict[str, str]
    cpuCost: float
    ramCost: float
    gpuCost: float
    totalCost: float
    idleCost: float | None = Field(None, description="The nodes' cost no pod requested (whole cluster only)")


class SlaReport(Out):
    target: float
    tenant_id: str | None
    period: ReportSpan | None = None
    cost: SlaCost | None = Field(None, description="null when the cost cannot be computed (no price table)")
    daily: list[ReportPeriod]
    weekly: list[ReportPeriod]
    monthly: list[ReportPeriod]


class AlertRule(BaseModel):
    """A threshold on one service figure; fires per service while the comparison holds."""

    name: str = Field(min_length=1, max_length=200, pattern=PRINTABLE, examples=["high error rate"])
    metric: Literal[RULE_METRICS] = Field(examples=["error_rate_percent"])  # type: ignore[valid-type]
    operator: Literal[">", ">=", "<", "<="] = ">"
    threshold: float = Field(strict=True, examples=[1.0], description="A number (true/false are refused).")
    tenant_id: str | None = Field(None, **{k: v for k, v in TENANT_ID.items() if k != "examples"})
    service: str | None = Field(None, max_length=317, pattern=PRINTABLE,
                                description="namespace/name or name; all when absent")
    severity: Literal["info", "warning", "critical"] = "warning"


class StoredRule(Out):
    """A rule as stored (the input's constraints are not re-checked on the way out)."""

    id: str
    name: str
    metric: str
    operator: str
    threshold: float
    tenant_id: str | None
    service: str | None
    severity: str
    created_at: str

    @classmethod
    def of(cls, rule: rows.AlertRule) -> StoredRule:
        return cls(id=str(rule.id), name=rule.name, metric=rule.metric, operator=rule.operator,
                   threshold=rule.threshold, tenant_id=rule.tenant, service=rule.service, severity=rule.severity,
                   created_at=rule.created_at.isoformat())


class RuleCreated(Out):
    status: str = "success"
    rule: StoredRule


class RuleList(Out):
    rules: list[StoredRule]


class RuleDeleted(Out):
    status: str = "success"
    id: str


class AlertEvent(Out):
    id: int
    rule_id: str
    name: str
    type: str = Field(description="What ECP-AI shows as the alert's title (the rule's name)")
    severity: str
    service: str | None
    tenant_id: str | None
    value: float | None
    message: str
    fired_at: str
    timestamp: str = Field(description="= fired_at, as ECP-AI reads it")
    resolved_at: str | None
    resolved: bool
    state: str = Field(examples=["firing"])

    @classmethod
    def of(cls, event: rows.AlertEvent) -> AlertEvent:
        fired = event.fired_at.isoformat()
        # type, timestamp and resolved are what ECP-AI's alert sync reads (the simulator it used before
        # answered these); fired_at, resolved_at and state are ours.
        return cls(id=event.id, rule_id=event.rule_id, name=event.name, severity=event.severity,
                   service=event.service, tenant_id=event.tenant, value=event.value, message=event.message or "",
                   fired_at=fired, resolved_at=event.resolved_at.isoformat() if event.resolved_at else None,
                   state="resolved" if event.resolved_at else "firing", type=event.name, timestamp=fired,
                   resolved=event.resolved_at is not None)


class AlertHistory(Out):
    alerts: list[AlertEvent]


class _Load(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factor: float = Field(strict=True, gt=0, le=100, description="Multiplies the load; 1 removes the override")
    duration_seconds: float = Field(600, strict=True, gt=0, le=7 * 86400, description="How long it lasts")


class ServiceLoad(_Load):
    """One service (a Deployment's or StatefulSet's name, with its namespace)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"namespace": "ecp-ai-t1", "service": "callbot", "factor": 5, "duration_seconds": 300}]})

    namespace: str = Field(**NAMESPACE)
    service: str = Field(**OBJECT_NAME)


class NamespaceLoad(_Load):
    """Every service of a namespace."""

    namespace: str = Field(**NAMESPACE)


class TenantLoad(_Load):
    """Every service of a tenant."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"tenant_id": "t1", "factor": 0.5,
                                                               "duration_seconds": 3600}]})

    tenant_id: str = Field(**{k: v for k, v in TENANT_ID.items() if k != "examples"})


#: Scale a service's, a namespace's or a tenant's load for a while (drive an HPA by hand).
LoadRequest = ServiceLoad | NamespaceLoad | TenantLoad


class LoadOverrideOut(Out):
    scope: str = Field(examples=["service:ecp-ai-t1/callbot"])
    factor: float = Field(examples=[5.0])
    until: str = Field(examples=["2024-01-15T10:35:00Z"])


class LoadOverrides(Out):
    overrides: list[LoadOverrideOut]


# --------------------------------------------------------------------------- traffic replay

TRAFFIC_CSV_EXAMPLE = ("timestamp,namespace,service,rps\n"
                       "2025-11-28T10:00:00Z,ecp-ai-tenant-123,callbot,42\n"
                       "2025-11-28T10:05:00Z,ecp-ai-tenant-123,callbot,57.5\n"
                       "2025-11-28T10:10:00Z,ecp-ai-tenant-123,callbot,61\n")


class TrafficRequest(BaseModel):
    """Real traffic to replay: a Prometheus `query_range` result (the whole answer, its `data` or its `result`
    list) or a CSV with the header `timestamp,namespace,service,rps` (RFC 3339 or epoch seconds)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"format": "csv", "data": TRAFFIC_CSV_EXAMPLE, "loop": True, "scale": 2.0, "shift_seconds": 0}]})

    format: Literal["prometheus", "csv"] = Field(description="What `data` is")
    data: str = Field(min_length=1, description="The file's text")
    loop: bool = Field(True, strict=True, description="Repeat the file (false: play it once, then the services "
                                                      "return to their synthetic curve)")
    scale: float = Field(1.0, strict=True, gt=0, le=1000, description="Multiplies every point (2: next year's growth)")
    shift_seconds: float = Field(0, strict=True, ge=0, le=366 * 86400,
                                 description="Start this many seconds into the file")
    namespace_label: str = Field("namespace", min_length=1, max_length=200,
                                 description="The label (CSV column) that holds the namespace")
    service_label: str = Field("service", min_length=1, max_length=200,
                               description="The label (CSV column) that holds the service: the Deployment's or "
                                           "StatefulSet's name")


class TrafficSeries(Out):
    service: str = Field(examples=["ecp-ai-tenant-123/callbot"], description="namespace/name")
    points: int
    matched: bool | None = Field(description="A service the simulator runs now (null: no monitoring data yet)")
    rps: float | None = Field(None, description="Replayed requests/s now, before load overrides and Scenarios "
                                               "(null: not playing)")


class TrafficStatus(Out):
    """What is replayed: `none`, `pending` (the engine has not ticked since), `playing` or `finished` (played once:
    its services are back on their synthetic curve)."""

    state: Literal["none", "pending", "playing", "finished"] = Field(examples=["playing"])
    id: str | None = None
    format: str | None = None
    loop: bool | None = None
    scale: float | None = None
    shift_seconds: float | None = None
    set_at: str | None = Field(None, description="When it was set (wall clock)")
    started: str | None = Field(None, description="The simulated time the engine began playing it")
    start: str | None = Field(None, description="The file's first timestamp")
    duration_seconds: float | None = Field(None, description="From the file's first timestamp to its last")
    period_seconds: float | None = Field(None, description="Looped: the duration plus one point spacing")
    points: int | None = None
    position_seconds: float | None = Field(None, description="Simulated seconds into the file now")
    services: list[TrafficSeries] = []


# --------------------------------------------------------------------------- scenarios

SCENARIO_EXAMPLE: dict[str, Any] = {
    "apiVersion": "k8sim.io/v1alpha1", "kind": "Scenario",
    "metadata": {"name": "crash-tts", "namespace": "ecp-ai-tenant-123"},
    "spec": {"type": "PodCrash", "target": {"namespace": "ecp-ai-tenant-123",
                                            "selector": {"matchLabels": {"app": "tts-server"}}},
             "duration": "5m", "parameters": {"exitCode": 1}},
}
#: Names of namespaced objects we create (DNS subdomains, lower case).
DNS_NAME: dict[str, Any] = {"min_length": 1, "max_length": 253,
                            "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
_LABEL_MAP = dict[Annotated[str, StringConstraints(min_length=1, max_length=317, pattern=PRINTABLE)],
                  Annotated[str, StringConstraints(max_length=63, pattern=PRINTABLE)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectorExpression(_Strict):
    key: str = Field(min_length=1, max_length=317, pattern=PRINTABLE)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[Annotated[str, StringConstraints(max_length=63, pattern=PRINTABLE)]] = []


class LabelSelector(_Strict):
    matchLabels: _LABEL_MAP | None = None
    matchExpressions: list[SelectorExpression] | None = None


class ScenarioTarget(_Strict):
    namespace: str | None = Field(None, **NAMESPACE)
    selector: LabelSelector | None = None
    tenant: str | None = Field(None, **{k: v for k, v in TENANT_ID.items() if k != "examples"})
    nodes: list[Annotated[str, StringConstraints(**OBJECT_NAME)]] | None = None
    pool: str | None = Field(None, max_length=63, pattern=PRINTABLE)
    zone: str | None = Field(None, max_length=63, pattern=PRINTABLE)
    instanceType: str | None = Field(None, max_length=63, pattern=PRINTABLE, examples=["g5.xlarge"])
    capacityType: str | None = Field(None, max_length=20, pattern=PRINTABLE, examples=["spot"])
    gpus: list[Annotated[int, Field(strict=True, ge=0, le=255)]] | None = Field(
        None, description="GPUXid, GPUThermalThrottle: GPU indexes on the target nodes", examples=[[0]])


class ScenarioRepeat(_Strict):
    every: str = Field(min_length=1, max_length=40, pattern=PRINTABLE, examples=["1h"])
    jitter: str | None = Field(None, max_length=40, pattern=PRINTABLE, examples=["10m"])
    times: int | None = Field(None, strict=True, ge=1, le=100000)


class ScenarioSpec(_Strict):
    type: Literal["PodCrash", "OOMKill", "NodeNotReady", "ZoneOutage", "ImagePullBackOff", "LoadSpike",
                  "LatencyIncident", "ErrorBurst", "ProbeFailure", "SpotInterruption", "CapacityShortage",
                  "GPUXid", "GPUThermalThrottle", "GPUFallenOffBus"]
    target: ScenarioTarget | None = None
    start: str | None = Field(None, max_length=64, pattern=PRINTABLE, description="RFC 3339 or '+30s'; default now")
    duration: str | None = Field(None, max_length=40, pattern=PRINTABLE,
                                 description="'90s', '5m', '1h30m'; default until deleted")
    parameters: dict[Annotated[str, StringConstraints(max_length=40, pattern=PRINTABLE)],
                     Annotated[float, Field(strict=True)]] | None = None
    repeat: ScenarioRepeat | None = None


class ScenarioMetadata(_Strict):
    name: str = Field(**DNS_NAME)
    namespace: str = Field(**NAMESPACE)
    labels: _LABEL_MAP | None = None


class ScenarioRequest(_Strict):
    """A Scenario as kubectl would apply it (apiVersion and kind may be left out)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SCENARIO_EXAMPLE]})

    apiVersion: Literal["k8sim.io/v1alpha1"] = "k8sim.io/v1alpha1"
    kind: Literal["Scenario"] = "Scenario"
    metadata: ScenarioMetadata
    spec: ScenarioSpec


class ScenarioOut(Out):
    apiVersion: str
    kind: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    status: dict[str, Any] = {}


class ScenarioList(Out):
    scenarios: list[ScenarioOut]
    count: int


class ScenarioDeleted(Out):
    status: Literal["deleted", "deleting"]
    namespace: str
    name: str


# --------------------------------------------------------------------------- capacity


class CapacityDocument(Out):
    """Per pool and node: allocatable, requested (by bound pods) and used (metrics.k8s.io; null
    without it); GPUs by type; pending pods grouped by the scheduler's reason.

    `gpus` (in allocatable/requested and by type) counts `nvidia.com/gpu`, the resource the scheduler
    places. Every pool and node also carries `physical_gpus` (GPUs installed) and `gpu_devices`
    (allocatable and requested per device resource: `nvidia.com/gpu`, `nvidia.com/gpu.shared`,
    `nvidia.com/mig-<profile>`); every node `gpu_sharing` (`none`, `time-slicing`, `mig-single`,
    `mig-mixed`; null without GPUs or for a GPU model the simulator does not know)."""

    pools: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    gpus: dict[str, dict[str, float]] = Field(description=(
        "GPU type → allocatable and requested nvidia.com/gpu (MIG single: MIG devices; time-sliced: replicas)"),
        examples=[{"t4": {"allocatable": 8, "requested": 3}}])
    gpu_types: dict[str, dict[str, Any]] = Field({}, description=(
        "GPU type → nodes, physical_gpus and gpu_devices (resource → allocatable, requested)"),
        examples=[{"a100": {"nodes": 1, "physical_gpus": 2, "gpu_devices": {
            "nvidia.com/mig-1g.5gb": {"allocatable": 4, "requested": 1},
            "nvidia.com/mig-2g.10gb": {"allocatable": 2, "requested": 0},
            "nvidia.com/mig-3g.20gb": {"allocatable": 2, "requested": 0}}}}])
    pending: list[dict[str, Any]]
    pending_pods: int
    pods_by_phase: dict[str, int] = Field(description="Every pod by status.phase", examples=[{"Running": 42}])
    metrics_available: bool
    source: dict[str, Any] | None = Field(None, description=(
        "After POST /cluster/import: the source cluster's nodes, pools, allocatable and requested, and the "
        "imported nodes' allocatable and requested now (`imported`)"))


class WhatIfRequest(BaseModel):
    """A manifest whose pods should be placed on the cluster as it is now (nothing of it is applied)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"manifest": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: tts\nspec:\n  replicas: 3\n  selector:\n"
        "    matchLabels: {app: tts}\n  template:\n    metadata:\n      labels: {app: tts}\n    spec:\n"
        "      containers:\n      - name: tts\n        image: tts:1\n        resources:\n"
        "          requests: {cpu: '2', memory: 8Gi}\n")}]})

    manifest: YamlText | Annotated[dict[str, str], Field(min_length=1)] = Field(
        description="Multi-document YAML, or file name → YAML (not empty).")
    max_pods: int = Field(500, strict=True, gt=0, le=5000, description="Refuse manifests asking for more pods")


class WhatIfResult(Out):
    fits: bool
    pods: int
    placed: int
    unplaced: int
    workloads: list[dict[str, Any]]
    additional_nodes: dict[str, int] = Field(description="pool → nodes to add so the rest fits ('none': no pool can)")
    karpenter_nodes: dict[str, int] = Field({}, description=(
        "instance type → nodes Karpenter would launch for the pods that fit nowhere now (the cheapest type of "
        "the price table that holds them, packed first-fit decreasing)"))
    karpenter_unfit_pods: int = Field(0, description="Pods no instance type of the price table can hold")
    added_usd_per_month: float = Field(0.0, description="On-demand $ per month (730 h) of karpenter_nodes")


# --------------------------------------------------------------------------- cost


class CostWindow(Out):
    start: str = Field(examples=["2026-07-20T10:00:00Z"])
    end: str = Field(examples=["2026-07-20T11:00:00Z"])


class Allocation(Out):
    """One allocation of OpenCost's allocation API: costs in US dollars over the window (network, load
    balancer, PV and shared costs are 0 here); efficiencies are usage / requests, null where usage is not
    known."""

    name: str
    properties: dict[str, Any]
    window: CostWindow
    start: str
    end: str
    minutes: float
    cpuCoreRequestAverage: float
    cpuCoreUsageAverage: float | None
    cpuCoreHours: float
    cpuCost: float
    cpuEfficiency: float | None
    gpuHours: float
    gpuCost: float
    ramByteRequestAverage: float
    ramByteUsageAverage: float | None
    ramByteHours: float
    ramCost: float
    ramEfficiency: float | None
    pvCost: float
    totalCost: float
    totalEfficiency: float | None


class CostDocument(Out):
    """OpenCost's allocation answer (``{"code": 200, "data": [{key: allocation}]}``, one set for the
    window, ``__idle__`` the nodes' cost no pod requested), plus the simulator's notes."""

    code: int = 200
    data: list[dict[str, Allocation]]
    window: CostWindow
    aggregate: str
    hourly_cost_now: float = Field(description="$ per hour of the nodes there are now")
    monthly_projection: float = Field(description="hourly_cost_now * 730 h")
    unpriced_nodes: list[str] = Field(description="Nodes whose instance type the price table lacks (cost 0)")
    pods_without_requests: int = Field(description=(
        "Recorded pods whose requests are no longer known (gone, and no live sibling of their owner): "
        "their share stays in __idle__"))


class NodeLife(Out):
    """One node's interval and why it came and went (or a NodeClaim's that never got a node: ``node`` null).
    Times are ISO 8601; null where the step did not happen (or happened before the history began)."""

    name: str = Field(examples=["kwok-gpu-a10g-brth5-…"])
    node: str | None = Field(description="The Node's name; null for a NodeClaim the cloud refused")
    nodeclaim: str | None = Field(description="Karpenter's NodeClaim of the node", examples=["gpu-a10g-brth5"])
    autoscaled: bool = Field(description="Made by Karpenter (else a static pool's node)")
    pool: str = Field(examples=["gpu-a10g"])
    instance_type: str | None = Field(examples=["g5.xlarge"])
    capacity_type: str = Field(examples=["on-demand", "spot"])
    zone: str | None = Field(examples=["us-east-1c"])
    hourly_price: float | None = Field(description="$ per hour (k8sim.cost's table); null if the table lacks it")
    created_at: str | None
    deleted_at: str | None = Field(description="null while it exists")
    claimed_at: str | None = Field(description="When Karpenter created its NodeClaim")
    launched_at: str | None
    registered_at: str | None
    ready_at: str | None
    initialized_at: str | None
    disrupted_at: str | None
    came: str = Field(examples=["static pool", "Karpenter: pending pods", "Karpenter: replacement (Underutilized)"])
    went: str | None = Field(description=(
        "Why it went: Karpenter's disruption reason (Underutilized, Empty, Drifted …), SpotInterrupted, "
        "InsufficientCapacityError or LaunchFailed (see message), the Scenario, or deleted"),
        examples=["Underutilized"])
    message: str | None = Field(description="The cloud's words for a refused launch")


class NodeCount(Out):
    at: str
    nodes: int
    hourly_cost: float = Field(description="$ per hour of the nodes there were then")


class NodeHistory(Out):
    """The nodes of a window, oldest first, and their number over time."""

    start: str
    end: str
    nodes: list[NodeLife]
    count: int
    over_time: list[NodeCount]


# --------------------------------------------------------------------------- cluster import


class ImportRequest(BaseModel):
    """A source cluster's export: `kubectl get … -A -o yaml`, `kubectl cluster-info dump`, or `kwokctl snapshot
    save --format k8s` (one text, or file name → text)."""

    # The example is applied as it is by whoever tries it (and the API's fuzzing): it changes nothing,
    # everything in it being what an import skips. docs/import.md shows a whole export.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"manifest": "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n"
                     "    name: web-7c9f-x2x4\n    namespace: shop\n    ownerReferences:\n"
                     "    - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: 0a1b, controller: true}\n"
                     "  spec:\n    containers: [{name: web, image: nginx}]\n- apiVersion: v1\n  kind: Event\n"
                     "  metadata: {name: web.17c, namespace: shop}\n", "scale": 1.0, "dry_run": True}]})

    manifest: YamlText | Annotated[dict[str, str], Field(min_length=1)] = Field(
        description="The export: YAML or JSON text, or file name → text.")
    scale: float = Field(1.0, gt=0, le=1, description="Share of each node pool's nodes to import (at least one "
                                                      "per pool): 0.1 keeps the shape with a tenth of the nodes.")
    secrets: Literal["placeholder", "keep"] = Field(
        "placeholder", description="Secrets' values: replaced by placeholders (default), or kept as exported.")
    dry_run: bool = Field(False, strict=True, description="Ask the apiserver (dryRun=All) without changing anything.")


class ImportEntry(Out):
    id: str = Field(examples=["shop/Deployment/web"])
    api_version: str
    kind: str
    namespace: str
    name: str
    action: Literal["created", "configured", "unchanged", "skipped", "failed"]
    reason: str | None = Field(None, description="Why it was skipped, or the apiserver's words for a failure")


class ImportReport(Out):
    """What an import did, object by object, and the source cluster's totals."""

    status: Literal["completed", "failed"] = Field(description="failed when any object failed (the rest are in)")
    format: str = Field(examples=["list", "cluster-info-dump", "kwokctl-snapshot"])
    scale: float
    dry_run: bool
    counts: dict[str, int] = Field(examples=[{"created": 12, "configured": 0, "unchanged": 0, "skipped": 30,
                                              "failed": 0}])
    failed_count: int
    elapsed: float = Field(description="Seconds the apply took")
    source: dict[str, Any] = Field(description="The source's nodes, pools, allocatable and requested")
    dropped_nodes: list[str] = Field(description="Source nodes left out by scale")
    nodes: list[ImportEntry]
    objects: list[ImportEntry]


# --------------------------------------------------------------------------- sessions


class SessionSimulator(Out):
    """What determines the model's samples; a replay runs on an engine with the same (docs/sessions.md)."""

    seed: int = Field(examples=[42])
    speed: float = Field(description="Simulated seconds per real second", examples=[1.0])
    step_seconds: float | None = Field(description="Simulated seconds per tick (null: no samples in the window)",
                                       examples=[5.0])
    tick_seconds: float | None = Field(description="Real seconds per tick", examples=[5.0])
    simulated_from: str | None = Field(description="The engine's simulated time at `from`, on its ticks")
    simulated_to: str | None = Field(description="The engine's simulated time at `to`, on its ticks")
    model_noise: bool | None = Field(description="The model's random parts (null: the engine does not say)")
    profile: str | None = None
    cluster_speed: float | None = Field(None, description=(
        "How many times faster than Kubernetes' the cluster's timers ran (K8SIM_CLUSTER_SPEED; null: the cluster "
        "does not say)"))


class SessionSla(Out):
    availability: float = Field(description="Percent of good requests of the session's services over the window")
    good: float
    total: float
    samples: int
    services: dict[str, dict[str, Any]] = Field(description="namespace/name → availability, good, total, samples")


class SessionExpected(Out):
    transitions: dict[str, list[str]] = Field(
        description="namespace/Kind/name → its transitions in order; a controller-named object (a pod, a "
                    "ReplicaSet) is namespace/Kind/<base>-*#i", examples=[{"shop/Deployment/web": [
                        "created", "ready", "scaled 2->3"], "shop/Pod/web-*#1": ["created", "scheduled", "ready"]}])
    sla: SessionSla | None = Field(description="null when the engine's clock could not be placed")


class SessionTrace(Out):
    """A recorded session (``python -m k8sim replay FILE --speed N`` plays it)."""

    format: Literal["k8sim-session/v1"]
    window: dict[str, str] = Field(examples=[{"from": "2026-12-07T10:00:00Z", "to": "2026-12-07T10:10:00Z"}])
    simulator: SessionSimulator
    scope: dict[str, list[str]] = Field(description="The namespaces and tenants the session touched")
    events: list[dict[str, Any]] = Field(description=(
        "Inputs in order: `offset` (wall seconds from `from`), `at`, `type` (deploy, delete, tenant_delete, load, "
        "load_clear, traffic, traffic_clear, scenario, scenario_delete) and the request (`manifest`… or `body`)"))
    expected: SessionExpected


class SessionCheck(Out):
    status: Literal["valid"]
    format: str
    events: int
    deploys: int
    objects: int = Field(description="Objects its deploys would apply")
    cluster_speed: float | None = Field(None, description=(
        "How many times faster than Kubernetes' this cluster's timers run (null: the cluster does not say)"))
