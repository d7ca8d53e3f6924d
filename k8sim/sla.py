"""SLA arithmetic: availability, error budget and the SRE workbook's multi-window burn rates.

Pure functions over (good, total) request counts; the store sums those per window.
"""

from __future__ import annotations

import dataclasses

#: (long window, short window, burn-rate threshold, severity): "Alerting on SLOs", SRE workbook ch. 5.
BURN_ALERTS = [
    ("1h", "5m", 14.4, "page"),
    ("6h", "30m", 6.0, "page"),
    ("3d", "6h", 1.0, "ticket"),
]
WINDOW_SECONDS = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600, "3d": 259200}


def availability(good: float, total: float) -> float:
    """Percentage of good requests; 100 when nothing was asked."""
    return 100.0 if total <= 0 else 100.0 * good / total


def burn_rate(good: float, total: float, target: float) -> float:
    """How fast the error budget burns: 1.0 spends exactly the budget over the SLO period."""
    if total <= 0:
        return 0.0
    allowed = 1 - target / 100
    return ((total - good) / total) / allowed if allowed > 0 else float("inf")


def budget_remaining(good: float, total: float, target: float) -> float:
    """Share of the window's error budget still unspent (negative once breached)."""
    if total <= 0:
        return 1.0
    allowed = (1 - target / 100) * total
    return 1.0 - (total - good) / allowed if allowed > 0 else 0.0


def status(percentage: float, target: float, remaining: float, fast_burn: bool) -> str:
    """meeting, at_risk (budget under 25 % or burning fast) or breached (below target)."""
    if percentage < target:
        return "breached"
    if remaining < 0.25 or fast_burn:
        return "at_risk"
    return "meeting"


@dataclasses.dataclass(frozen=True)
class BurnAlert:
    long_window: str
    short_window: str
    threshold: float
    severity: str
    long_rate: float
    short_rate: float

    @property
    def firing(self) -> bool:
        return self.long_rate > self.threshold and self.short_rate > self.threshold


def burn_alerts(windows: dict[str, tuple[float, float]], target: float) -> list[BurnAlert]:
    """Each multi-window rule evaluated over (good, total) sums per window name."""
    found = []
    for long_w, short_w, threshold, severity in BURN_ALERTS:
        lg, lt = windows.get(long_w, (0.0, 0.0))
        sg, st = windows.get(short_w, (0.0, 0.0))
        found.append(BurnAlert(long_w, short_w, threshold, severity, burn_rate(lg, lt, target),
                               burn_rate(sg, st, target)))
    return found
