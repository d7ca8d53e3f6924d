"""The API's own description: every operation documents its answer, routes take only dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import k8sim_api.routes
from k8sim_api.main import create_app


def schema_is_named(schema: dict[str, Any]) -> bool:
    return "$ref" in schema or (bool(schema.get("anyOf")) and all("$ref" in s for s in schema["anyOf"]))


def test_every_operation_documents_its_success_body_with_a_named_schema() -> None:
    spec = create_app().openapi()
    assert len(spec["paths"]) >= 20
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            bodies = [r.get("content", {}).get("application/json", {}).get("schema", {})
                      for code, r in operation["responses"].items() if code.startswith("2")]
            assert bodies and all(schema_is_named(b) for b in bodies), (method, path)
            assert operation.get("summary"), (method, path)


def test_every_schema_the_contract_names_has_an_example() -> None:
    schemas = create_app().openapi()["components"]["schemas"]
    for name in ("ManifestRequest", "ServiceLoad", "TenantLoad"):
        assert schemas[name].get("examples"), name
    assert schemas["ResourceItem"]["properties"]["id"]["examples"] == ["ecp-ai-t1/Deployment/callbot"]


def test_no_route_reads_the_app_state() -> None:
    folder = Path(k8sim_api.routes.__file__).parent
    offenders = [p.name for p in folder.glob("*.py") if "app.state" in p.read_text()]
    assert not offenders, f"routes take their dependencies from deps.py: {offenders}"
