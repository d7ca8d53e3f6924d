"""Settings every process shares: the garbage collector's thresholds from K8SIM_GC_THRESHOLD."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from k8sim_engine.settings import EngineSettings

from k8sim.settings import CommonSettings, tune_gc


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_the_collector_is_spaced_out_as_configured(thresholds: None, monkeypatch: pytest.MonkeyPatch) -> None:
    tune_gc(CommonSettings())
    assert gc.get_threshold() == (50_000, 20, 20), "the default"
    monkeypatch.setenv("K8SIM_GC_THRESHOLD", "1234")
    tune_gc(CommonSettings())
    assert gc.get_threshold()[0] == 1234


def test_zero_keeps_pythons_own_thresholds(thresholds: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8SIM_GC_THRESHOLD", "0")
    tune_gc(CommonSettings())
    assert gc.get_threshold() == (700, 10, 10)
    monkeypatch.setenv("K8SIM_GC_THRESHOLD", "-1")
    with pytest.raises(ValueError):
        CommonSettings()


def test_a_moved_port_moves_the_urls_of_every_process_and_an_explicit_url_is_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8SIM_POSTGRES_PORT", "7350")
    monkeypatch.setenv("K8SIM_REDIS_PORT", "7351")
    for cls in (CommonSettings, EngineSettings):
        moved = cls()
        assert (moved.database_url, moved.redis_url) == ("postgresql://k8sim@127.0.0.1:7350/k8sim",
                                                         "redis://127.0.0.1:7351/0")
    monkeypatch.setenv("K8SIM_DATABASE_URL", "postgresql://sim@db.simulator.svc:5432/sim")
    assert CommonSettings().database_url == "postgresql://sim@db.simulator.svc:5432/sim"
