"""Request and response bodies of the contract, with the examples /docs shows."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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
