"""The engine's settings: every field has a default and a K8SIM_ environment variable."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import Field

from k8sim.settings import CommonSettings


class Takeover(StrEnum):
    """When the engine takes back a metrics group that another backend's APIService holds."""

    NEVER = "never"
    UNAVAILABLE = "unavailable"
    ALWAYS = "always"


class EngineSettings(CommonSettings):
    """Clock, model and outputs of the monitoring engine."""

    engine_port: int = Field(6381, description="Port of /metrics and /health.")
    tick_seconds: float = Field(5.0, description="Real seconds between ticks.")
    sim_start: dt.datetime | None = Field(None, description="Simulated start time (ISO 8601); default now.")
    sim_end: dt.datetime | None = Field(None, description="Simulated time the clock stops at (a bounded run, such "
                                                          "as a month at high speed); default never.")
    model_noise: bool = Field(True, description="The load's random parts (AR(1) noise, bursts, spontaneous incidents, "
                                               "memory drift); false leaves the daily cycle, load overrides and "
                                               "Scenarios, so what an HPA sees follows from them.")
    snapshot_every: float = Field(60.0, description="Simulated seconds between snapshots kept for history.")
    retention_days: float = Field(35.0, description="Simulated days of samples and snapshots kept.")
    redis_ttl: int = Field(60, description="Seconds the latest snapshot lives in Redis without a new tick.")
    watch: bool = Field(True, description="Follow the cluster with watches (false: list everything every tick).")
    metrics_api_port: int = Field(6382, description="HTTPS port of the metrics APIs kube-aggregator calls.")
    metrics_api_host: str = Field("127.0.0.1", description="Address the aggregator dials for the metrics APIs "
                                                          "(the ExternalName Service's target).")
    play_addons: bool = Field(True, description=(
        "Play the metrics add-ons users apply (prometheus-adapter with its rules, metrics-server, KEDA and its "
        "ScaledObjects) behind their own APIServices; needs the local cluster's egress proxy (the chart turns it "
        "off: the host cluster's apiserver cannot reach the engine as those add-ons' Services)."))
    register_metrics_apis: bool = Field(True, description="Register the metrics APIs with the cluster (APIService) "
                                                          "and keep them registered: one deleted is re-created.")
    metrics_api_takeover: Takeover = Field(Takeover.UNAVAILABLE, description=(
        "When the engine takes back a metrics group whose APIService another backend holds (say kube-prometheus' "
        "prometheus-adapter): 'never' (it only reports it in /health and on the dashboard), 'unavailable' (once "
        "kube-aggregator has reported that backend Available=False for metrics_api_takeover_grace seconds: a "
        "backend that works keeps its group, a missing one does not stop kubectl top and every CPU HPA) or "
        "'always' (at once). Whatever this says, a group whose APIService is deleted is registered again."))
    metrics_api_takeover_grace: float = Field(30.0, ge=0, description=(
        "Seconds a foreign metrics backend may stay unavailable before the 'unavailable' takeover: long enough "
        "for a backend that is starting (its pods pulling images) to come up."))
