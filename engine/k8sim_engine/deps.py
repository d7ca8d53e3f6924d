"""Dependencies of the engine's routes: the engine, its settings, the last tick's usage, selectors.

As in the API (api/k8sim_api/deps.py), routes take everything through these ``Annotated`` types
and never read ``app.state``; every dependency is ``async`` (a plain ``def`` one would cost a
thread hop per request, and kube-aggregator asks many times a second).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Annotated, Protocol

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection, Request

from .metrics_api import Usage, parse_selector
from .played import Played
from .runner import Engine
from .settings import EngineSettings


class UsageSource(Protocol):
    """What the metrics APIs read: the engine, whose ``usage`` is its last tick's."""

    usage: Usage


@dataclasses.dataclass(frozen=True)
class Selectors:
    """A request's labelSelector and fieldSelector, parsed (each matches everything when absent)."""

    labels: Callable[[Mapping[str, str]], bool]
    fields: Callable[[Mapping[str, str]], bool]


async def engine_dep(conn: HTTPConnection) -> Engine:
    engine: Engine = conn.app.state.engine
    return engine


async def settings_dep(engine: Annotated[Engine, Depends(engine_dep)]) -> EngineSettings:
    return engine.settings


async def usage_dep(conn: HTTPConnection) -> Usage:
    """The last tick's figures, read once per request: a tick landing mid-answer does not mix two."""
    source: UsageSource = conn.app.state.source
    return source.usage


async def played_dep(conn: HTTPConnection) -> Played | None:
    """The add-ons the engine plays (None for a source that plays none, as in unit tests)."""
    played: Played | None = getattr(conn.app.state.source, "played", None)
    return played


async def selectors_dep(request: Request) -> Selectors:
    """400 (a Status, as Kubernetes answers) for a selector Kubernetes would refuse."""
    try:
        return Selectors(parse_selector(request.query_params.get("labelSelector")),
                         parse_selector(request.query_params.get("fieldSelector")))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


EngineDep = Annotated[Engine, Depends(engine_dep)]
SettingsDep = Annotated[EngineSettings, Depends(settings_dep)]
UsageDep = Annotated[Usage, Depends(usage_dep)]
SelectorsDep = Annotated[Selectors, Depends(selectors_dep)]
PlayedDep = Annotated[Played | None, Depends(played_dep)]
