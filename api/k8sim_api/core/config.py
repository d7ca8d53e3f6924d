"""The API's settings: every field has a default and a K8SIM_ environment variable."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path

from pydantic import Field, SecretStr

from k8sim.manifests import Limits
from k8sim.settings import CLUSTER_DATA, CommonSettings

#: The simulator's version, from its package metadata (pyproject.toml), said once.
VERSION = metadata.version("k8s-simulator")


class ApiSettings(CommonSettings):
    """How the API listens, what it accepts and how long a deploy may wait."""

    api_port: int = Field(6360, description="Port of the HTTP API and WebSocket.")
    cors_origins: list[str] = Field(["http://localhost:3000"], description="Origins allowed by CORS (ECP-AI UI).")
    crds: Path = Field(CLUSTER_DATA / "crds", description="CRDs installed at start (ServiceMonitor, VPA …).")
    deploy_timeout: float = Field(25.0, description="Seconds a deploy waits for readiness (ECP-AI times out at 30).")
    tenant_delete_wait: float = Field(3.0, ge=0, description="Seconds a tenant delete waits for its objects to go "
                                      "before answering with what is still terminating (ECP-AI times out at 10).")
    max_body_bytes: int = Field(8 * 1024 * 1024, description="Largest request body accepted, bytes.")
    max_manifest_bytes: int = Field(5 * 1024 * 1024, description="Largest manifest (all files), bytes.")
    max_documents: int = Field(1000, description="Most YAML documents / objects in one manifest.")
    max_depth: int = Field(64, description="Deepest nesting of a YAML document.")
    max_aliases: int = Field(1000, description="Most YAML alias uses in one document.")
    max_nodes: int = Field(500_000, description="Most YAML nodes one document may expand to.")
    default_namespace: str = Field("default", description="Namespace of objects that name none.")
    ws_queue: int = Field(16, description="Updates buffered per WebSocket client before it is dropped as slow.")
    ws_compression: bool = Field(False, description="Offer permessage-deflate on WebSockets: less traffic, but "
                                                    "every snapshot compressed once per client (with many clients, "
                                                    "most of the API's CPU).")
    api_token: SecretStr | None = Field(None, description="When set, every endpoint but /health needs it: "
                                        "`Authorization: Bearer <token>`, or `?access_token=` once in a "
                                        "browser (it then keeps a cookie).")

    @property
    def limits(self) -> Limits:
        return Limits(max_bytes=self.max_manifest_bytes, max_documents=self.max_documents,
                      max_depth=self.max_depth, max_aliases=self.max_aliases, max_nodes=self.max_nodes)


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
