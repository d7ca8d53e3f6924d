"""Typed rows of the store's tables, as the store's queries return them.

Readers get attributes a type checker knows instead of ``asyncpg.Record`` keys: a renamed column
fails in mypy, not in a request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Self


class Row:
    """A dataclass filled from a record whose columns carry the fields' names (extra columns ignored)."""

    __slots__ = ()

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Self:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return cls(**{name: record[name] for name in names})

    @classmethod
    def all(cls, records: Iterable[Mapping[str, Any]]) -> list[Self]:
        return [cls.of(r) for r in records]


@dataclasses.dataclass(frozen=True, slots=True)
class Step(Row):
    """One recorded lifecycle step (resource_events)."""

    id: int
    uid: str
    api_version: str
    kind: str
    namespace: str
    name: str
    tenant: str | None
    transition: str
    detail: dict[str, Any]
    resource_version: str
    occurred_at: dt.datetime
    observed_at: dt.datetime
    reconciled: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Deployment(Row):
    """A deploy request's record (deployments), without its manifest text."""

    id: uuid.UUID
    tenant: str | None
    namespace: str | None
    status: str
    deployed_count: int
    failed_count: int
    message: str | None
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectRef(Row):
    """An object some deploy created (deployment_objects); namespace "" when cluster-scoped."""

    api_version: str
    kind: str
    namespace: str
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodSums(Row):
    """Requests over a period: good and total, samples, minutes with samples, the first sample's time."""

    good: float
    total: float
    samples: int
    minutes: int
    first: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class ReportRow(Row):
    """One day, week or month of the SLA report: its start, requests and minutes with samples."""

    period: dt.datetime
    good: float
    total: float
    minutes: int


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot(Row):
    """A stored /monitoring/health document."""

    taken_at: dt.datetime
    document: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class AlertRule(Row):
    id: uuid.UUID
    name: str
    metric: str
    operator: str
    threshold: float
    tenant: str | None
    service: str | None
    severity: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class AlertEvent(Row):
    """An alert fired (and maybe resolved) by a threshold rule or a burn-rate rule."""

    id: int
    rule_id: str
    name: str
    severity: str
    service: str | None
    tenant: str | None
    value: float | None
    message: str | None
    fired_at: dt.datetime
    resolved_at: dt.datetime | None
