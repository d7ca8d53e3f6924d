"""SLA arithmetic: availability, error budget and the SRE workbook's multi-window burn rates.

Pure functions over (good, total) request counts, and :func:`current`, which asks the store
for those sums per window.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg

from k8sim import store

#: (long window, short window, burn-rate threshold, severity): "Alerting on SLOs", SRE workbook ch. 5.
BURN_ALERTS = [
    ("1h", "5m", 14.4, "page"),
    ("6h", "30m", 6.0, "page"),
    ("3d", "6h", 1.0, "ticket"),
]
#: Service figures a threshold rule may watch (POST /sla/alerts/rules), as the engine reports them.
RULE_METRICS = ("cpu_usage_percent", "memory_usage_percent", "error_rate_percent", "response_time_ms",
                "requests_per_second", "ready_pods")
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


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The SLA over one window: the figure, its status, the budget left and the burn-rate alerts."""

    percentage: float
    status: str
    remaining: float
    alerts: list[BurnAlert]


def evaluate(good: float, total: float, target: float,
             windows: dict[str, tuple[float, float]] | None = None) -> Evaluation:
    """The one place an SLA status is decided (engine ticks, /sla/status, tenant views alike)."""
    alerts = burn_alerts(windows or {}, target)
    percentage = round(availability(good, total), 3)
    remaining = budget_remaining(good, total, target)
    return Evaluation(percentage, status(percentage, target, remaining, alerts[0].firing), remaining, alerts)


async def current(conn: asyncpg.Connection, *, target: float, window_s: float,
                  tenant: str | None = None) -> dict[str, Any]:
    """The /sla/status document over the window ending at the newest sample (simulated time; a
    tenant's own newest, so a tenant's windows are its own even where engines' clocks differ)."""
    end = await store.latest_sample_time(conn, tenant)
    if end is None:
        return {"status": "meeting", "percentage": 100.0, "target": target, "data_points": 0, "healthy_points": 0,
                "error_budget_remaining": 1.0, "burn_rates": {}, "window_seconds": window_s, "tenant_id": tenant}
    good, total = await store.window_sums(conn, end, window_s, tenant=tenant)
    points, healthy = await store.sla_points(conn, end, window_s, target, tenant=tenant)
    windows = {name: await store.window_sums(conn, end, seconds, tenant=tenant)
               for name, seconds in WINDOW_SECONDS.items()}
    result = evaluate(good, total, target, windows)
    return {"status": result.status, "percentage": result.percentage,
            "target": target, "data_points": points, "healthy_points": healthy,
            "error_budget_remaining": round(result.remaining, 4),
            "burn_rates": {name: round(burn_rate(*windows[name], target), 3) for name in windows},
            "window_seconds": window_s, "requests": {"good": round(good), "total": round(total)},
            "as_of": end.isoformat(), "tenant_id": tenant}
