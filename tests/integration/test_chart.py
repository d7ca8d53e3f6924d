"""The Helm chart renders, lints, and the apiserver accepts what it renders."""

from __future__ import annotations

import pytest
import yaml

from k8sim.local import build, processes
from k8sim.local.settings import ClusterSettings
from k8sim.settings import ROOT

from .conftest import Kubectl

pytestmark = pytest.mark.integration

CHART = ROOT / "charts" / "k8s-simulator"


def test_chart_lints_renders_and_passes_a_server_dry_run(settings: ClusterSettings, kubectl: Kubectl,
                                                           namespace: str) -> None:
    helm = str(build.ensure_helm(settings))
    lint = processes.run([helm, "lint", str(CHART), "--kube-version", "1.36.3"])
    assert "0 chart(s) failed" in lint.stdout
    rendered = processes.run([helm, "template", "sim", str(CHART), "--namespace", namespace, "--kube-version",
                            "1.36.3", "--set", "database.existingSecret=sim-db"]).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Deployment", "Deployment", "Service",
                     "Service", "ServiceAccount"]
    commands = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["command"]
                for d in docs if d["kind"] == "Deployment"}
    assert commands["sim-k8s-simulator-operator"][:4] == ["kopf", "run", "-m", "k8sim_operator.handlers"]
    assert commands["sim-k8s-simulator-api"] == ["python", "-m", "k8sim_api"]
    out = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=rendered)
    assert out.count("(server dry run)") == len(docs)
