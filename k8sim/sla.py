"""SLA arithmetic: availability, error budget and the SRE workbook's multi-window burn rates.

Pure functions over (good, total) request counts, and :func:`current`, which asks the store
for those sums per window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg

from k8sim import rows, store

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


@dataclasses.dataclass(frozen=True)
class Status:
    """The SLA over the window ending at the newest sample (/sla/status)."""

    status: str
    percentage: float
    target: float
    data_points: int
    healthy_points: int
    error_budget_remaining: float
    burn_rates: dict[str, float]
    window_seconds: float
    tenant_id: str | None
    #: good and total requests in the window, and where it ends; None before the first sample
    requests: dict[str, int] | None = None
    as_of: str | None = None

    def as_json(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        for key in ("requests", "as_of"):
            if body[key] is None:
                del body[key]
        return body


async def current(conn: asyncpg.Connection, *, target: float, window_s: float,
                  tenant: str | None = None) -> Status:
    """The /sla/status figures over the window ending at the newest sample (simulated time; a
    tenant's own newest, so a tenant's windows are its own even where engines' clocks differ)."""
    end = await store.latest_sample_time(conn, tenant)
    if end is None:
        return Status("meeting", 100.0, target, 0, 0, 1.0, {}, window_s, tenant)
    good, total = await store.window_sums(conn, end, window_s, tenant=tenant)
    points, healthy = await store.sla_points(conn, end, window_s, target, tenant=tenant)
    windows = {name: await store.window_sums(conn, end, seconds, tenant=tenant)
               for name, seconds in WINDOW_SECONDS.items()}
    result = evaluate(good, total, target, windows)
    return Status(result.status, result.percentage, target, points, healthy, round(result.remaining, 4),
                  {name: round(burn_rate(*windows[name], target), 3) for name in windows}, window_s, tenant,
                  {"good": round(good), "total": round(total)}, end.isoformat())


def verdict(good: float, total: float, target: float) -> str:
    return "meeting" if availability(good, total) >= target else "breached"


@dataclasses.dataclass(frozen=True)
class ReportPeriod:
    """One day, week or month as recorded."""

    period: str
    availability: float
    requests: int
    failed_requests: int
    minutes: int
    status: str

    @classmethod
    def of(cls, row: rows.ReportRow, target: float) -> ReportPeriod:
        return cls(row.period.isoformat(), round(availability(row.good, row.total), 4), round(row.total),
                   round(row.total - row.good), row.minutes, verdict(row.good, row.total, target))


@dataclasses.dataclass(frozen=True)
class ReportSpan:
    """The last ``days`` up to the newest sample. ``coverage`` is the share of the span from its first
    sample on: earlier (or engine-down) time is not counted, nothing is extrapolated."""

    days: float
    start: dt.datetime
    end: dt.datetime
    sums: rows.PeriodSums
    target: float

    def as_json(self) -> dict[str, Any]:
        sums, days = self.sums, self.days
        return {
            "days": days, "from": self.start.isoformat(), "to": self.end.isoformat(),
            "first_sample": sums.first.isoformat() if sums.first else None,
            "availability": round(availability(sums.good, sums.total), 4), "requests": round(sums.total),
            "failed_requests": round(sums.total - sums.good), "samples": sums.samples,
            "minutes_with_samples": sums.minutes,
            "coverage": round(((self.end - sums.first).total_seconds() / (days * 86400)) if sums.first else 0.0, 4),
            "error_budget_remaining": round(budget_remaining(sums.good, sums.total, self.target), 4),
            "status": verdict(sums.good, sums.total, self.target)}


#: The report's sections: their unit and how many days back each goes.
REPORT_SECTIONS = (("daily", "day", 7), ("weekly", "week", 35), ("monthly", "month", 92))


@dataclasses.dataclass(frozen=True)
class Report:
    """Daily, weekly and monthly availability from the stored history (and the last N days)."""

    target: float
    tenant_id: str | None
    period: ReportSpan | None
    sections: dict[str, list[ReportPeriod]]

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"target": self.target, "tenant_id": self.tenant_id}
        if self.period is not None:
            body["period"] = self.period.as_json()
        for name, periods in self.sections.items():
            body[name] = [dataclasses.asdict(p) for p in periods]
        return body


async def report(conn: asyncpg.Connection, *, target: float, tenant: str | None = None,
                 days: float | None = None) -> Report:
    """Computed from the recorded samples only, up to the newest (now without any)."""
    end = await store.latest_sample_time(conn, tenant) or dt.datetime.now(dt.UTC)
    span = None
    if days is not None:
        since = end - dt.timedelta(days=days)
        span = ReportSpan(days, since, end, await store.period_sums(conn, since, end, tenant=tenant), target)
    sections = {name: [ReportPeriod.of(r, target) for r in await store.sla_report(
        conn, unit, end - dt.timedelta(days=back), tenant=tenant)] for name, unit, back in REPORT_SECTIONS}
    return Report(target, tenant, span, sections)
