"""SLA arithmetic: availability, error budget, burn rates and the one status decision."""

from __future__ import annotations

import pytest

from k8sim import sla


def test_availability_and_budget() -> None:
    assert sla.availability(0, 0) == 100.0
    assert sla.availability(995, 1000) == 99.5
    assert sla.budget_remaining(1000, 1000, 99.5) == 1.0
    assert sla.budget_remaining(995, 1000, 99.5) == pytest.approx(0.0)
    assert sla.budget_remaining(990, 1000, 99.5) == pytest.approx(-1.0), "negative once breached"


def test_burn_rate_is_one_when_spending_exactly_the_budget() -> None:
    assert sla.burn_rate(995, 1000, 99.5) == pytest.approx(1.0)
    assert sla.burn_rate(928, 1000, 99.5) == pytest.approx(14.4)
    assert sla.burn_rate(0, 0, 99.5) == 0.0


def test_multi_window_alerts_need_both_windows_burning() -> None:
    hot, cool = (900.0, 1000.0), (1000.0, 1000.0)
    alerts = {a.long_window: a for a in sla.burn_alerts({"1h": hot, "5m": cool, "6h": hot, "30m": hot}, 99.5)}
    assert not alerts["1h"].firing, "the short window has recovered"
    assert alerts["6h"].firing and alerts["6h"].severity == "page"
    assert not alerts["3d"].firing


@pytest.mark.parametrize(("good", "windows", "status"), [
    (1000, {}, "meeting"),
    (990, {}, "breached"),
    (996, {}, "at_risk"),  # 20 % of the budget left
    (999, {"1h": (900.0, 1000.0), "5m": (900.0, 1000.0)}, "at_risk"),  # burning fast
])
def test_one_evaluation_decides_the_status(good: float, windows: dict, status: str) -> None:
    result = sla.evaluate(good, 1000, 99.5, windows)
    assert result.status == status
    assert result.percentage == round(100 * good / 1000, 3)
