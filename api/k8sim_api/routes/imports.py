"""POST /cluster/import: bring a real cluster's nodes and workloads into the simulator."""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache
from typing import Any

from fastapi import APIRouter

from k8sim import importer
from k8sim.manifests import Limits
from k8sim.settings import ImportSettings
from k8sim_api.core.config import ApiSettings
from k8sim_api.deps import KubeDep, SettingsDep
from k8sim_api.schemas import BAD_BODY, ErrorResponse, ImportReport, ImportRequest

router = APIRouter(prefix="/cluster", tags=["import"], responses=BAD_BODY)
log = logging.getLogger("k8sim_api.import")

ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Over a size, object or alias-expansion limit"},
    422: {"model": ErrorResponse, "description": "Not YAML or JSON, not Kubernetes objects, or a bad scale"},
}


@lru_cache
def import_settings() -> ImportSettings:
    return ImportSettings()


def import_limits(settings: ApiSettings) -> Limits:
    """The deploy's body limits, but for the objects: an export has many more than a tenant's manifest."""
    return dataclasses.replace(settings.limits, max_documents=import_settings().import_max_objects)


@router.post("/import", response_model=ImportReport, responses=ERRORS,
             summary="Import a cluster's export: its nodes as KWOK nodes, its workloads by server-side apply")
async def import_cluster(body: ImportRequest, kube: KubeDep, settings: SettingsDep) -> ImportReport:
    """Nodes keep their names, capacity, labels and taints (addresses from the simulator's range); objects are
    applied without what the source cluster owned, in dependency order; what the simulated cluster makes
    itself is skipped with the reason. Objects the cluster refuses are reported `failed` with the
    apiserver's words and the rest are imported (200); a second import of the same export reports
    `unchanged`."""
    options = import_settings()
    report = await importer.run(kube, body.manifest, limits=import_limits(settings), scale=body.scale,
                                keep_secrets=body.secrets == "keep", dry_run=body.dry_run,
                                ip_range=options.node_ip_range, concurrency=options.import_concurrency)
    counts = report.counts()
    log.info("import (%s): %s", report.format, ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    return ImportReport.model_validate(report.as_dict())
