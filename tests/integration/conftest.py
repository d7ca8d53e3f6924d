"""Integration fixtures: the real cluster, PostgreSQL and Redis, started once per session."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from k8sim import cluster, services
from k8sim.settings import ClusterSettings


@pytest.fixture(scope="session")
def live_cluster(settings: ClusterSettings) -> ClusterSettings:
    """The simulated cluster, started if it is not running (a no-op when it is)."""
    cluster.up(settings)
    return settings


@pytest.fixture(scope="session")
def live_services(settings: ClusterSettings) -> ClusterSettings:
    services.up(settings)
    return settings


class Kubectl:
    """kubectl against the simulated cluster, JSON in and out."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return cluster.kubectl(self.settings, *args, stdin=stdin, check=check).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


@pytest.fixture(scope="session")
def kubectl(live_cluster: ClusterSettings) -> Kubectl:
    return Kubectl(live_cluster)


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
