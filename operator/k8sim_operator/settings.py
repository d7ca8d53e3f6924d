"""The operator's settings: every field has a default and a K8SIM_ environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from k8sim.settings import CLUSTER_DATA, ROOT, CommonSettings


class OperatorSettings(CommonSettings):
    """What the operator records and how it plays add-ons."""

    provisioner: str = Field("simulated.k8sim.io", description="Provisioner name of our storage classes.")
    storage_classes: Path = Field(CLUSTER_DATA / "storageclasses.yaml",
                                  description="Storage classes installed at start.")
    lb_pool: str = Field("172.18.255.10-172.18.255.250",
                         description="Addresses for LoadBalancer status (first-last); never contacted.")
    ingress_address: str = Field("172.18.255.2", description="Status address of every Ingress.")
    scenario_crd: Path = Field(CLUSTER_DATA / "crds" / "scenario.yaml",
                               description="The Scenario CRD the operator installs at start.")
    background_interval: float = Field(10.0, description="Seconds between draws of background failures.")
    background_selector: str = Field("", description="Label selector of the pods background crashes may hit "
                                                     "(empty: every pod).")
    spool: Path = Field(ROOT / ".state" / "operator-spool.jsonl",
                        description="Observations kept on disk while PostgreSQL is unavailable.")
    batch_size: int = Field(500, description="Observations written per transaction.")
    flush_interval: float = Field(0.25, description=(
        "Seconds a partial batch waits for more (the latency bound of the history; under load a longer wait "
        "means larger batches, which cost PostgreSQL and the operator less per row)."))
    retry_max: float = Field(10.0, description="Cap of the reconnect backoff, seconds.")
    sweep_interval: float = Field(300.0, description="Seconds between safety-net checks of every kind for "
                                                     "objects deleted unseen (a relisted kind is checked at once).")
    sweep_delay: float = Field(2.0, description="Seconds a check waits after a relist, so kinds relisted "
                                                "together are checked together.")
    foreign_window: float = Field(300.0, description=(
        "Seconds within which another cluster's committed watch position means its recorder writes into this "
        "database now (a running recorder commits one at least with each watch bookmark): while one does, "
        "sweeps record no deletions."))
    resume_wait: float = Field(30.0, description=(
        "Seconds a starting recorder waits for PostgreSQL to read where each kind's watch stopped; after that, "
        "kinds the spool has a position for resume from it and the others are listed (their steps while "
        "the operator was down are then seen as current states only)."))
