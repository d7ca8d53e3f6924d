"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from k8sim.local.settings import ClusterSettings


@pytest.fixture(scope="session")
def settings() -> ClusterSettings:
    return ClusterSettings()
