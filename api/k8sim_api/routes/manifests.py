"""POST /k8s/manifest/parse, /upload and /deploy."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from k8sim import deploy, manifests
from k8sim.kube import Kube
from k8sim.manifests import Document, ManifestError, Problem
from k8sim_api.core.config import ApiSettings
from k8sim_api.deps import BroadcasterDep, KubeDep, PoolDep, SettingsDep, TasksDep
from k8sim_api.schemas import BAD_BODY, DeployResponse, ErrorResponse, ManifestRequest, ParseResponse

router = APIRouter(prefix="/k8s/manifest", tags=["manifests"], responses=BAD_BODY)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed YAML or input"},
    413: {"model": ErrorResponse, "description": "Over a size, document or alias-expansion limit"},
    422: {"model": ErrorResponse, "description": "Invalid objects (the apiserver's dry run says why)"},
}


@dataclasses.dataclass
class Checked:
    """A parsed manifest, its objects ready to apply, and what the apiserver's dry run said."""

    documents: list[Document]
    prepared: list[Document]
    namespace: str
    problems: list[Problem]
    notes: list[str]

    def rejection(self) -> ManifestError:
        return ManifestError(f"{len(self.problems)} invalid resource(s): "
                             + "; ".join(map(str, self.problems[:5])), self.problems, status=422)


async def checked(kube: Kube, settings: ApiSettings, manifest: str | dict[str, str],
                  tenant: str | None, namespace: str | None = None, create_namespace: bool = False) -> Checked:
    """Parse (raising on malformed input), prepare and dry-run a manifest; with
    ``create_namespace`` a missing target namespace becomes the manifest's first object."""
    documents = manifests.parse(manifest, settings.limits)
    namespace = namespace or manifests.tenant_namespace(documents, tenant) or settings.default_namespace
    if create_namespace and not any(d.kind == "Namespace" and d.name == namespace for d in documents) \
            and await kube.get("v1", "Namespace", namespace) is None:
        documents = [Document({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                              len(documents), "create_namespace"), *documents]
    namespaced = {key: info.namespaced for key, info in (await kube.discover()).items()}
    prepared = manifests.prepare(documents, tenant=tenant, default_namespace=namespace, namespaced=namespaced)
    problems, notes = await deploy.validate(kube, prepared)
    return Checked(documents, prepared, namespace, problems, notes)


def parse_response(result: Checked, tenant: str | None, strict: bool) -> ParseResponse:
    """Parsing succeeds for any well-formed manifest; the dry run's findings come with it.

    A manifest can be well formed and still not deployable here (a removed API version, a
    namespace that does not exist yet): ``valid`` and ``errors`` say so, and ``strict``
    turns them into a 422 instead.
    """
    if strict and result.problems:
        raise result.rejection()
    message = None
    if result.problems:
        message = (f"parsed {len(result.documents)} resources; {len(result.problems)} would be rejected "
                   "by the cluster: " + "; ".join(map(str, result.problems[:3])))
    return ParseResponse(status="success", resources=[d.obj for d in result.documents], count=len(result.documents),
                         tenant_id=tenant, valid=not result.problems, errors=[p.as_dict() for p in result.problems],
                         notes=result.notes, message=message)


@router.post("/parse", response_model=ParseResponse, responses=ERRORS,
             summary="Parse and validate a manifest (server-side dry run); nothing is applied")
async def parse(body: ManifestRequest, kube: KubeDep, settings: SettingsDep,
                strict: Annotated[bool, Query(description="Answer 422 when the dry run rejects any object")] = False,
                ) -> ParseResponse:
    result = await checked(kube, settings, body.manifest, body.tenant_id, body.namespace, body.create_namespace)
    return parse_response(result, body.tenant_id, strict)


@router.post("/upload", response_model=ParseResponse, responses=ERRORS,
             summary="Parse and validate a YAML file sent as multipart form data")
async def upload(kube: KubeDep, settings: SettingsDep, file: Annotated[UploadFile, File()],
                 tenant_id: Annotated[str | None, Form(max_length=253)] = None,
                 strict: Annotated[bool, Query()] = False) -> ParseResponse:
    raw = await file.read(settings.max_manifest_bytes + 1)
    if len(raw) > settings.max_manifest_bytes:
        raise ManifestError(f"file is larger than {settings.max_manifest_bytes} bytes", status=413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{file.filename}: not UTF-8 text (byte {exc.start})") from None
    result = await checked(kube, settings, {file.filename or "upload.yaml": text}, tenant_id)
    return parse_response(result, tenant_id, strict)


def manifest_text(manifest: str | dict[str, str]) -> str:
    if isinstance(manifest, str):
        return manifest
    return "\n".join(f"---\n# file: {name}\n{text}" for name, text in manifest.items())


@router.post("/deploy", response_model=DeployResponse,
             responses={**ERRORS, 202: {"model": DeployResponse, "description": "wait=false: deploy started"},
                        409: {"model": ErrorResponse}},
             summary="Apply a manifest (server-side apply, dependency order) and wait until it is ready")
async def deploy_manifest(body: ManifestRequest, kube: KubeDep, pool: PoolDep, settings: SettingsDep,
                          broadcaster: BroadcasterDep, tasks: TasksDep, response: Response,
                          wait: Annotated[bool | None, Query(description="Overrides the body's `wait`")] = None,
                          timeout: Annotated[float | None, Query(gt=0, le=3600,
                                                                 description="Readiness timeout, seconds")] = None,
                          ) -> DeployResponse:
    tenant = body.tenant_id
    result = await checked(kube, settings, body.manifest, tenant, body.namespace, body.create_namespace)
    if result.problems:
        raise result.rejection()  # nothing is applied unless every object passes the dry run
    prepared = result.prepared
    deployer = deploy.Deployer(kube, pool, timeout=timeout or settings.deploy_timeout, tenant=tenant,
                               announce=broadcaster.announce)
    outcome = await deployer.begin(prepared, tenant=tenant, namespace=result.namespace,
                                   mode=body.deployment_mode, manifest_text=manifest_text(body.manifest))
    if not (body.wait if wait is None else wait):
        task = asyncio.create_task(deployer.run(outcome, prepared))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        outcome.status = "deploying"
        response.status_code = 202
        return DeployResponse.model_validate(outcome.as_response(tenant))
    outcome = await deployer.run(outcome, prepared)
    if outcome.status == "failed":
        # Non-2xx so ECP-AI's raise_for_status() retries; the body still says what failed.
        response.status_code = 422
    return DeployResponse.model_validate(outcome.as_response(tenant))
