"""Request and response bodies of the contract, with the examples /docs shows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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

    manifest: str | dict[str, str] = Field(description="Multi-document YAML, or file name → YAML.")
    tenant_id: str | None = Field(None, max_length=253, description="ECP-AI tenant id.")
    deployment_mode: str | None = Field(None, max_length=64, description="ECP-AI's mode (demo, production …).")
    namespace: str | None = Field(None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                  description="Namespace of objects that name none, like kubectl -n "
                                              "(default: the tenant's namespace in the manifest, else default).")
    wait: bool = Field(True, description="Deploy only: wait for readiness (false answers at once).")


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
