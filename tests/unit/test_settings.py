"""Settings every process shares: the garbage collector's thresholds from K8SIM_GC_THRESHOLD."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

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
