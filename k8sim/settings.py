"""Settings shared by every process: where the cluster, PostgreSQL and Redis are.

Each process's own settings class extends :class:`CommonSettings` (the local tooling's is
:class:`k8sim.local.settings.ClusterSettings`); every field has a default and an environment
variable (``K8SIM_`` + the field name in capitals).
"""

from __future__ import annotations

import gc
from importlib import resources
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root: the default state folder lives here (in a checkout).
ROOT = Path(__file__).resolve().parent.parent
#: What the cluster is made of (stages, profiles, node pools, CRDs, storage classes, the audit policy):
#: package data, found where the package is installed, as the migrations are. A real folder, not a
#: Traversable: the kube-apiserver, kubectl and KWOK read these files by path, and pip always installs
#: packages unzipped (``as_file`` would extract a zipped one to a temporary copy gone on exit).
CLUSTER_DATA = Path(str(resources.files("k8sim") / "cluster"))


class CommonSettings(BaseSettings):
    """Addresses every process needs."""

    model_config = SettingsConfigDict(env_prefix="K8SIM_", extra="ignore")

    state_dir: Path = Field(ROOT / ".state", description="Project-local, git-ignored state folder.")
    kubeconfig: Path = Field(
        ROOT / ".state" / "kubeconfig",
        description="Kubeconfig of the simulated cluster (any kubeconfig works).",
    )
    bind_address: str = Field(
        "127.0.0.1", description="Address every listening component binds (loopback: never serve other hosts)."
    )
    postgres_port: int = Field(6350, description="PostgreSQL port on loopback.")
    redis_port: int = Field(6351, description="Redis port on loopback.")
    database_url: str = Field(
        "", description="asyncpg DSN of the store (default: the local PostgreSQL on postgres_port)."
    )
    redis_url: str = Field("", description="Redis URL for snapshots (default: the local Redis on redis_port).")
    profile: str = Field("demo", description="Cluster profile of k8sim/cluster/profiles.yaml: stage delays, "
                                             "control-plane timers, background failures (demo or realistic).")
    speed: float = Field(1.0, description="Simulated seconds per real second of the model and the SLA (60: a day in "
                                          "24 minutes); the cluster's own timers always run in real time.")
    seed: int = Field(42, description="Seed of every random process (the model, background failures).")
    background: dict[str, float] = Field(
        {}, description="Overrides of the profile's background failure rates, as JSON "
                        '(for example {"pod_crashes_per_day": 0.2}); see k8sim/cluster/profiles.yaml.')
    log_level: str = Field("WARNING", description="Log level of our own loggers (quiet by default).")
    sla_target: float = Field(99.5, description="SLA target, percent of good requests.")
    sla_window_seconds: float = Field(3600.0, description="Window of /sla/status and summaries, simulated s.")
    redis_key: str = Field("k8sim:monitoring:latest", description="Redis key of the latest snapshot.")
    redis_channel: str = Field("k8sim:monitoring", description="Redis channel snapshots are published on.")
    load_key: str = Field("k8sim:load", description="Redis hash of load-control overrides (POST /monitoring/load).")
    traffic_key: str = Field("k8sim:traffic", description="Redis hash of the replayed traffic (POST "
                                                        "/monitoring/traffic) and when the engine began playing it.")
    deploy_channel: str = Field("k8sim:deployments", description="Redis channel of deploy progress events.")
    gc_threshold: int = Field(50_000, ge=0, description=(
        "Allocations between passes of Python's cyclic garbage collector over its youngest objects "
        "(0 keeps Python's default of 700). At thousands of watched objects the default makes the collector "
        "walk the whole heap every few ticks, a large share of the engine's tick (bench/bench_tick.py measures it)."))

    @model_validator(mode="after")
    def _local_urls(self) -> CommonSettings:
        # Moving a port alone must move every process that connects to it (a second simulator beside
        # the first); an explicit URL (the chart's) is kept as given.
        if not self.database_url:
            self.database_url = f"postgresql://k8sim@127.0.0.1:{self.postgres_port}/k8sim"
        if not self.redis_url:
            self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        return self


class NodeSettings(CommonSettings):
    """The fake nodes: the local cluster's and the Helm chart's node Job (``python -m k8sim.jobs nodes``)."""

    nodepools: Path = Field(CLUSTER_DATA / "nodepools.yaml", description="Node-pool file.")
    node_ip_range: str = Field(
        "10.240.0.0/16", description="CIDR the nodes' InternalIPs come from (addresses only, never contacted)."
    )
    kwok_shards: int = Field(1, ge=1, description=(
        "KWOK controllers sharing the chart's fake nodes: the node Job labels each node k8sim.io/kwok-shard "
        "(a hash of its name) and each controller plays its own shard. The local cluster has one."))



class ImportSettings(NodeSettings):
    """Importing a cluster (``python -m k8sim import``, ``POST /cluster/import``); the API's body limits are
    its deploy's."""

    import_concurrency: int = Field(16, ge=1, le=256, description="Objects an import applies at once.")
    import_max_objects: int = Field(50_000, ge=1, description=(
        "Most objects in one import (a cluster's export holds far more than a deploy's manifest)."))
    import_max_bytes: int = Field(256 * 1024 * 1024, ge=1, description=(
        "Largest export the command line reads (the API keeps its own body limits)."))


class TrafficSettings(CommonSettings):
    """Replaying real traffic (``POST /monitoring/traffic``, ``python -m k8sim traffic``): its limits and where the
    command line posts."""

    traffic_max_bytes: int = Field(8 * 1024 * 1024, ge=1, description=(
        "Largest traffic file, bytes (the API's max_body_bytes also bounds what it receives)."))
    traffic_max_points: int = Field(200_000, ge=2, description="Most points in one traffic file (all series).")
    traffic_max_series: int = Field(2_000, ge=1, description="Most series (services) in one traffic file.")
    api_url: str = Field("http://127.0.0.1:6360", description="The API `python -m k8sim traffic` posts to.")
    api_token: SecretStr | None = Field(None, description="Bearer token `python -m k8sim traffic` sends (the "
                                                          "API's api_token, when it sets one).")


def tune_gc(settings: CommonSettings) -> None:
    """Space the garbage collector's passes out as ``settings.gc_threshold`` says (called once at start)."""
    if settings.gc_threshold:
        # Older generations wait twice Python's default number of younger passes: reference counting
        # frees almost everything here, the collector is only for the rare cycle.
        gc.set_threshold(settings.gc_threshold, 20, 20)
