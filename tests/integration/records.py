"""What the recorder wrote, read straight from PostgreSQL, and the Deployment the recorder tests churn."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import yaml

from k8sim import store


def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        await store.init_connection(conn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()
    return asyncio.run(run())


def history(dsn: str, namespace: str, kind: str) -> dict[str, list[str]]:
    """Each object's lifecycle steps in order (the Kubernetes Events about it left out)."""
    rows = query(dsn, "SELECT uid, transition FROM resource_events WHERE namespace = $1 AND kind = $2 "
                 "AND transition <> 'event' ORDER BY id", namespace, kind)
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["uid"], []).append(row["transition"])
    return found


def live(dsn: str, namespace: str, kind: str) -> dict[str, Any]:
    rows = query(dsn, "SELECT * FROM resources WHERE namespace = $1 AND kind = $2 AND deleted_at IS NULL",
                 namespace, kind)
    return {r["uid"]: r for r in rows}


def deployment(name: str, replicas: int, labels: dict[str, str] | None = None) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels or {}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
