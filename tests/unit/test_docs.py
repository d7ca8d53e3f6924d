"""The documentation cannot go stale silently: generated pages cover the code, copies match their source."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
SHARED_CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = module
    spec.loader.exec_module(module)
    return module


gen_docs = load_generator()


def settings_classes_in_source() -> dict[str, list[str]]:
    """module → settings classes, found by reading every source file (not by asking the generator)."""
    found: dict[str, list[str]] = {}
    for folder in ("k8sim", "api", "operator", "engine"):
        for path in (ROOT / folder).rglob("*.py"):
            names = re.findall(r"^class (\w+)\([^)]*Settings[^)]*\):", path.read_text(), re.M)
            if names:
                parts = path.relative_to(ROOT).with_suffix("").parts
                module = ".".join(parts[1:] if parts[0] in {"api", "operator", "engine"} else parts)
                found[module] = names
    return found


def section(page: str, heading: str) -> str:
    match = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", page, re.M | re.S)
    assert match, f"no section {heading}"
    return match.group(1)


def test_the_settings_page_lists_every_field_of_every_settings_class() -> None:
    in_source = settings_classes_in_source()
    assert {"k8sim.settings", "k8sim.local.settings", "k8sim_api.core.config", "k8sim_engine.settings",
            "k8sim_operator.settings"} <= in_source.keys()
    assert set(in_source) == set(gen_docs.SETTINGS_MODULES), "a settings module the generator does not read"
    page = gen_docs.settings_page()
    for module_name, class_names in in_source.items():
        module = importlib.import_module(module_name)
        for class_name in class_names:
            cls = getattr(module, class_name)
            assert issubclass(cls, BaseSettings)
            # A field is listed once, in the section of the class that declares it.
            sections = {klass: section(page, klass.__name__) for klass in cls.__mro__
                        if isinstance(klass, type) and issubclass(klass, BaseSettings) and klass is not BaseSettings}
            assert cls.model_fields
            for name in cls.model_fields:
                variable = f"`K8SIM_{name.upper()}`"
                assert any(variable in text for text in sections.values()), (class_name, variable)


def test_a_settings_row_shows_the_variable_type_default_and_description() -> None:
    page = gen_docs.settings_page()
    assert ("| `K8SIM_API_PORT` | `int` | `6360` | Port of the HTTP API and WebSocket. |"
            in section(page, "ApiSettings"))
    # Paths are shown relative to the checkout, not as this machine's absolute path.
    assert "| `K8SIM_KUBECONFIG` | `Path` | `.state/kubeconfig` |" in section(page, "CommonSettings")
    assert str(ROOT) not in page


def test_the_api_page_lists_every_operation_and_the_websockets() -> None:
    from k8sim_api.main import create_app

    spec = create_app().openapi()
    page = gen_docs.api_page()
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f"| `{method.upper()} {path}` |" in page, (method, path)
    assert "`/ws/monitoring`" in page
    assert "| `GET /metrics` |" in section(page, "Monitoring engine")


def test_the_scale_results_page_is_rendered_from_the_result_files(tmp_path: Path) -> None:
    document = {
        "benchmark": "bench_scale", "date": "2026-01-02T03:04:05+00:00", "seconds": 321.0,
        "machine": {"nproc": 2, "memory_gib": 23.5, "cpu": "Test CPU", "kernel": "6.1", "python": "3.11.7"},
        "commit": "abc123", "arguments": {"pods": "1000", "rounds": 1},
        "figures": {
            "runs": [{"mode": "raw", "round": 1, "phases": [
                {"what": "pods Running", "count": 1000, "seconds": 12.34, "rate": 81.04,
                 "cpu_seconds": {"kube-apiserver": 10.5, "etcd": 2.25}, "peak_rss_bytes": {"kube-apiserver": 2**31},
                 "apiserver_requests": {}, "extra": {}}]}],
            "ratios": [{"round": 1, "what": "pods Running", "count": 1000, "raw_rate": 81.04, "full_rate": 70.5,
                        "ratio": 0.87}]}}
    (tmp_path / "bench_scale-20260102T030405Z.json").write_text(json.dumps(document))
    page = gen_docs.results_page(tmp_path)
    assert "## bench_scale, 2026-01-02 03:04 UTC" in page
    assert "2 cores (Test CPU), 23.5 GiB" in page
    row = ("| raw | 1 | pods Running | 1,000 | 12.3 | 81.0 | kube-apiserver 10.5, etcd 2.25 (total 12.8) "
           "| kube-apiserver 2.00 GiB |")
    assert row in page
    assert "| round 1 | pods Running | 1,000 | 81.0 | 70.5 | **0.87** |" in page


def test_every_committed_result_file_is_on_the_results_page() -> None:
    page = gen_docs.results_page()
    files = sorted((ROOT / "bench" / "results").glob("*.json"))
    for path in files:
        assert f"`bench/results/{path.name}`" in page


def test_the_offline_check_finds_assets_from_other_hosts(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
        '<script src="assets/local.js"></script><a href="https://example.org/">a link a reader follows</a>')
    (tmp_path / "extra.css").write_text("@font-face { src: url(//cdn.example.com/f.woff2) }")
    assert gen_docs.network_assets(tmp_path) == ["extra.css: //cdn.example.com/f.woff2",
                                                 "index.html: https://fonts.googleapis.com/css?family=Roboto"]


def test_the_readme_links_resolve_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert "docs/contract.md" in local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing
    assert "../shared" not in readme


def test_the_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[2:6] == [
        "```bash",
        "make run    # installs what is missing, builds the control plane (cached), starts everything",
        "make test   # runs the whole test suite against the real cluster, PostgreSQL, Redis, Prometheus and Chromium",
        "```"]


@pytest.mark.skipif(not SHARED_CONTRACT.exists(), reason="no shared/ folder beside the checkout")
def test_the_contract_copy_is_the_shared_contract() -> None:
    assert (ROOT / "docs" / "contract.md").read_bytes() == SHARED_CONTRACT.read_bytes(), (
        "docs/contract.md differs from ../shared/CONTRACT.md: copy it again")
