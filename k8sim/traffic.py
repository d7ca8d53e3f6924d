"""Real traffic replayed: per-service load curves from a team's own monitoring.

A Prometheus ``query_range`` result (``sum by (namespace, service) (rate(http_requests_total[5m]))``)
or a CSV (``timestamp,namespace,service,rps``) becomes one curve per service key (``namespace/name``,
the model's key: the workload's name). While a :class:`Replay` plays, a replayed service's requests per
second are its curve at the replay's position (linear between points) times ``scale``, in place of the
synthetic daily cycle; load overrides and Scenarios still multiply it (see :meth:`k8sim.model.Service.step`).

The position is simulated seconds since the engine first ticked with the replay, plus ``shift``, counted
from the file's first timestamp. Looped, the file repeats every :attr:`Replay.period` (its span plus one
point spacing, so a day of 5-minute points loops every 24 h, its last point running into its first);
played once, a service returns to its synthetic curve after its last point.

Pure: the API parses and stores, the engine plays; Redis carries the stored form between them.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import io
import itertools
import json
import math
import re
import statistics
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

FORMATS = ("prometheus", "csv")
#: The Redis hash fields: the replay's id, its stored form, and the engine's anchor (when it began).
ID_FIELD, REPLAY_FIELD, ANCHOR_FIELD = "id", "replay", "anchor"
#: Problems named one by one in an error; the rest are counted.
MAX_PROBLEMS = 50


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a traffic file: where (series, line, point) and what."""

    message: str
    series: str | None = None
    line: int | None = None
    point: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = [w for w in (f"series {self.series}" if self.series else "",
                             f"line {self.line}" if self.line is not None else "",
                             f"point {self.point}" if self.point is not None else "") if w]
        return f"{', '.join(where)}: {self.message}" if where else self.message


class TrafficError(ValueError):
    """A traffic file that cannot be replayed; ``status`` is the HTTP status it deserves (413: too large)."""

    def __init__(self, message: str, problems: Iterable[Problem] = (), status: int = 422):
        self.problems = list(problems)
        self.status = status
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{message}: {shown}{more}" if shown else message)


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = 8 * 1024 * 1024
    max_points: int = 200_000
    max_series: int = 2_000


@dataclasses.dataclass(frozen=True)
class Series:
    """One service's curve: ascending, distinct epoch seconds and requests per second."""

    key: str
    times: tuple[float, ...]
    values: tuple[float, ...]

    def at(self, t: float) -> float | None:
        """Linear between points; None outside [first, last]."""
        if not self.times or t < self.times[0] or t > self.times[-1]:
            return None
        i = bisect.bisect_right(self.times, t)
        if i >= len(self.times):
            return self.values[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


@dataclasses.dataclass(frozen=True)
class Replay:
    """Curves with how to play them: looped or once, scaled, shifted (seconds into the file)."""

    series: tuple[Series, ...]
    format: str = "csv"
    loop: bool = True
    scale: float = 1.0
    shift: float = 0.0
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    set_at: float = 0.0  # wall-clock epoch seconds it was set

    @property
    def start(self) -> float:
        return min(s.times[0] for s in self.series)

    @property
    def end(self) -> float:
        return max(s.times[-1] for s in self.series)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def spacing(self) -> float:
        """The file's point spacing: the median gap between a series' consecutive points."""
        gaps = [b - a for s in self.series for a, b in itertools.pairwise(s.times)]
        return statistics.median(gaps)

    @property
    def period(self) -> float:
        return self.duration + self.spacing

    @property
    def points(self) -> int:
        return sum(len(s.times) for s in self.series)

    def position(self, elapsed: float) -> float:
        """Seconds into the file after ``elapsed`` simulated seconds of play."""
        return elapsed + self.shift

    def finished(self, position: float) -> bool:
        return not self.loop and position > self.duration

    def value(self, series: Series, position: float) -> float | None:
        """One series' requests per second at ``position`` (scaled); None where it does not play."""
        if not self.loop:
            found = series.at(self.start + position)
            return None if found is None else found * self.scale
        period = self.period
        t = self.start + position % period
        found = series.at(t)
        if found is None:  # between its last point and its first, a period later
            first, last = series.times[0], series.times[-1]
            t = t + period if t < first else t
            share = (t - last) / (first + period - last)
            found = series.values[-1] + (series.values[0] - series.values[-1]) * share
        return found * self.scale

    def rps(self, position: float) -> dict[str, float]:
        """service key → replayed requests per second at ``position``, for the series that play there."""
        found = {}
        for s in self.series:
            value = self.value(s, position)
            if value is not None:
                found[s.key] = value
        return found

    def stored_value(self) -> str:
        return json.dumps({"id": self.id, "format": self.format, "loop": self.loop, "scale": self.scale,
                           "shift": self.shift, "set_at": self.set_at,
                           "series": {s.key: [s.times, s.values] for s in self.series}})

    @classmethod
    def stored(cls, value: bytes | str) -> Replay:
        """What :meth:`stored_value` wrote (ValueError if unreadable)."""
        try:
            data = json.loads(value)
            series = tuple(Series(k, tuple(map(float, t)), tuple(map(float, v)))
                           for k, (t, v) in data["series"].items())
            if not series or any(len(s.times) < 2 or len(s.times) != len(s.values) for s in series):
                raise ValueError("unreadable traffic replay: a series without two points")
            return cls(series, str(data["format"]), bool(data["loop"]), float(data["scale"]), float(data["shift"]),
                       str(data["id"]), float(data["set_at"]))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable traffic replay: {exc!r}") from None

    def view(self, elapsed: float | None, services: Iterable[str] | None = None,
             started: float | None = None) -> dict[str, Any]:
        """What GET /monitoring/traffic answers. ``elapsed``: simulated seconds the engine has played it (None:
        not yet); ``services``: the keys the engine models now (None: unknown); ``started``: the simulated time
        (epoch s) the engine began playing it."""
        known = None if services is None else set(services)
        position = None if elapsed is None else self.position(elapsed)
        state = "pending" if position is None else "finished" if self.finished(position) else "playing"
        stamp = dt.datetime.fromtimestamp
        return {
            "state": state, "id": self.id, "format": self.format, "loop": self.loop, "scale": self.scale,
            "shift_seconds": self.shift,
            "set_at": stamp(self.set_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "started": None if started is None else _when(started),
            "start": stamp(self.start, dt.UTC).isoformat().replace("+00:00", "Z"),
            "duration_seconds": self.duration, "period_seconds": self.period if self.loop else None,
            "points": self.points, "position_seconds": position,
            "services": [{"service": s.key, "points": len(s.times),
                          "matched": None if known is None else s.key in known,
                          "rps": None if position is None or state == "finished" else _round(self.value(s, position))}
                         for s in self.series],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --------------------------------------------------------------------------- parsing


def parse(text: str, fmt: str, *, loop: bool = True, scale: float = 1.0, shift: float = 0.0,
          namespace_label: str = "namespace", service_label: str = "service", limits: Limits | None = None,
          set_at: float = 0.0) -> Replay:
    """A traffic file as a :class:`Replay`; :class:`TrafficError` naming every problem found."""
    limits = limits or Limits()
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise TrafficError(f"traffic file over {limits.max_bytes} bytes", status=413)
    if fmt == "prometheus":
        raw, problems = _prometheus(text, namespace_label, service_label)
    elif fmt == "csv":
        raw, problems = _csv(text, namespace_label, service_label, limits)
    else:
        raise TrafficError(f"unknown format {fmt!r}", [Problem(f"format is one of {', '.join(FORMATS)}")])
    if len(raw) > limits.max_series:
        raise TrafficError(f"{len(raw)} series, over the limit of {limits.max_series}", status=413)
    total = sum(len(points) for points in raw.values())
    if total > limits.max_points:
        raise TrafficError(f"{total} points, over the limit of {limits.max_points}", status=413)
    series = []
    troubled = {p.series for p in problems}
    for key, points in raw.items():
        points.sort(key=lambda p: p[0])
        times = [t for t, _ in points]
        repeated = sorted({t for a, t in itertools.pairwise(times) if a == t})
        if key in troubled:
            continue  # its points' own problems say why it is short
        if repeated:
            problems.append(Problem(f"timestamp {_when(repeated[0])} given more than once", key))
        elif len(points) < 2:
            problems.append(Problem(f"{len(points)} point(s): a curve needs at least 2", key))
        else:
            series.append(Series(key, tuple(times), tuple(v for _, v in points)))
    if problems:
        raise TrafficError("traffic file not usable", problems[:MAX_PROBLEMS]
                           + ([Problem(f"… and {len(problems) - MAX_PROBLEMS} more problems")]
                              if len(problems) > MAX_PROBLEMS else []))
    if not series:
        raise TrafficError("traffic file not usable", [Problem("no series in it")])
    return Replay(tuple(sorted(series, key=lambda s: s.key)), fmt, loop, scale, shift, set_at=set_at)


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _number(value: Any) -> float | None:
    """A finite number from a JSON number or numeric string, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


#: Most requests per second a point may hold (a typo's exponent, not traffic).
MAX_RPS = 1e9
#: Epoch seconds accepted: from 1970 to the year 9999 (what a datetime can show).
MAX_EPOCH = 253_402_300_799.0


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from epoch seconds (number or text) or RFC 3339 text (no offset: UTC)."""
    number = _number(value)
    if number is None and isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        number = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    return number if number is not None and 0 <= number <= MAX_EPOCH else None


def _rps(value: Any, key: str, problems: list[Problem], line: int | None = None,
         point: int | None = None) -> float | None:
    number = _number(value)
    if number is None:
        problems.append(Problem(f"rps {str(value)[:40]!r} is not a finite number", key, line, point))
    elif number < 0:
        problems.append(Problem(f"rps {number} is negative", key, line, point))
    elif number > MAX_RPS:
        problems.append(Problem(f"rps {number} is over {MAX_RPS:g}", key, line, point))
    else:
        return number
    return None


#: Kubernetes' names: a namespace is a DNS label, a workload a DNS subdomain.
NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _key(namespace: Any, service: Any) -> str | None:
    """namespace/name, when both are Kubernetes names."""
    if not isinstance(namespace, str) or not isinstance(service, str):
        return None
    namespace, service = namespace.strip(), service.strip()
    if not NAMESPACE.fullmatch(namespace) or not NAME.fullmatch(service):
        return None
    return f"{namespace}/{service}"


def _not_names(namespace: Any, service: Any) -> str:
    return (f"{str(namespace)[:70]!r}, {str(service)[:70]!r} are not a namespace and a Deployment's or "
            "StatefulSet's name")


def _prometheus(text: str, namespace_label: str, service_label: str
                ) -> tuple[dict[str, list[tuple[float, float]]], list[Problem]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: a JSONDecodeError, or an integer too long to read
        raise TrafficError("not a Prometheus query_range result",
                           [Problem(f"not JSON: {getattr(exc, 'msg', exc)}", line=getattr(exc, "lineno", None))]
                           ) from None
    if isinstance(data, dict) and "status" in data:
        if data.get("status") != "success":
            raise TrafficError("not a Prometheus query_range result",
                               [Problem(f"the query failed: {str(data.get('error', data.get('status')))[:200]}")])
        data = data.get("data")
    if isinstance(data, dict) and "result" in data:
        if data.get("resultType", "matrix") != "matrix":
            raise TrafficError("not a Prometheus query_range result", [Problem(
                f"resultType {str(data.get('resultType'))[:40]!r}: a range query's matrix is needed "
                "(/api/v1/query_range, not /api/v1/query)")])
        data = data["result"]
    if not isinstance(data, list):
        raise TrafficError("not a Prometheus query_range result", [Problem(
            "expected {\"status\": \"success\", \"data\": {\"resultType\": \"matrix\", \"result\": [...]}}, "
            "its data, or its result list")])
    found: dict[str, list[tuple[float, float]]] = {}
    problems: list[Problem] = []
    for i, item in enumerate(data):
        where = f"#{i}"
        if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict) \
                or not isinstance(item.get("values"), list):
            problems.append(Problem("not a series: expected {\"metric\": {...}, \"values\": [[ts, \"rps\"], ...]}",
                                    where))
            continue
        labels = item.get("metric") or {}
        missing = [name for name in (namespace_label, service_label) if not labels.get(name)]
        if missing:
            shown = json.dumps(labels, sort_keys=True)[:120]
            problems.append(Problem(f"no label {' or '.join(map(repr, missing))} among {shown}", where))
            continue
        key = _key(labels[namespace_label], labels[service_label])
        if key is None:
            problems.append(Problem(_not_names(labels[namespace_label], labels[service_label]), where))
            continue
        if key in found:
            problems.append(Problem(f"a second series for {key}: aggregate them "
                                    f"(sum by ({namespace_label}, {service_label}))", f"{where} {key}"))
            continue
        points = found[key] = []
        for n, pair in enumerate(item["values"]):
            if not isinstance(pair, list) or len(pair) != 2:
                problems.append(Problem("not a [timestamp, \"value\"] pair", key, point=n))
                continue
            t = _timestamp(pair[0])
            if t is None:
                problems.append(Problem(f"timestamp {str(pair[0])[:40]!r} is not epoch seconds", key, point=n))
            value = _rps(pair[1], key, problems, point=n)
            if t is not None and value is not None:
                points.append((t, value))
    return found, problems


def _csv(text: str, namespace_label: str, service_label: str, limits: Limits
         ) -> tuple[dict[str, list[tuple[float, float]]], list[Problem]]:
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        raise TrafficError("not CSV", [Problem("this looks like JSON: is it a Prometheus result "
                                               "(format \"prometheus\")?")])
    columns = ("timestamp", namespace_label, service_label, "rps")
    try:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise TrafficError("not CSV", [Problem(f"no header line: expected {','.join(columns)}")])
        names = [h.strip().lstrip("\ufeff").lower() for h in header]
        missing = [c for c in columns if c.lower() not in names]
        if missing:
            raise TrafficError("not CSV with the needed columns", [Problem(
                f"no column {c!r} in the header {','.join(names)[:200]!r}", line=reader.line_num) for c in missing])
        at = {c: names.index(c.lower()) for c in columns}
        found: dict[str, list[tuple[float, float]]] = {}
        problems: list[Problem] = []
        rows = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            rows += 1
            if rows > limits.max_points:
                raise TrafficError(f"over {limits.max_points} points", status=413)
            line = reader.line_num
            if len(row) < len(names):
                problems.append(Problem(f"{len(row)} fields, the header has {len(names)}", line=line))
                continue
            key = _key(row[at[namespace_label]], row[at[service_label]])
            if key is None:
                problems.append(Problem(_not_names(row[at[namespace_label]], row[at[service_label]]), line=line))
                continue
            t = _timestamp(row[at["timestamp"]])
            if t is None:
                problems.append(Problem(f"timestamp {row[at['timestamp']][:40]!r} is neither RFC 3339 nor "
                                        "epoch seconds", key, line))
            value = _rps(row[at["rps"]], key, problems, line)
            if t is not None and value is not None:
                found.setdefault(key, []).append((t, value))
            elif key not in found:
                found[key] = []
    except csv.Error as exc:
        raise TrafficError("not CSV", [Problem(str(exc))]) from None
    return found, problems


# --------------------------------------------------------------------------- the engine's anchor


def anchor_value(replay_id: str, sim: float) -> str:
    """The anchor field: the simulated time (epoch seconds) the engine began playing replay ``replay_id``."""
    return json.dumps({"id": replay_id, "sim": sim})


def anchor_of(value: bytes | str | None, replay_id: str) -> float | None:
    """The stored anchor's simulated time, when it is this replay's."""
    if value is None:
        return None
    try:
        data = json.loads(value)
        return float(data["sim"]) if data.get("id") == replay_id else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def matched(replay: Replay, services: Mapping[str, Any] | Iterable[str]) -> list[str]:
    """The replay's series keys that name one of ``services`` (exactly: ``t1/x`` never matches ``t10/x``)."""
    known = set(services)
    return [s.key for s in replay.series if s.key in known]
