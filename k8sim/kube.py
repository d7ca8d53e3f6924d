"""The one async Kubernetes client every process uses: kubeconfig, discovery, apply, CRUD.

A thin layer over httpx speaking the apiserver's REST API directly, so any kind the
cluster serves (built-in or custom) is handled the same way, including server-side apply
and ``dryRun=All``. It works against any kubeconfig, or in-cluster. Watches, where every pod's
every change arrives, go over aiohttp (a C HTTP parser; httpx's per-chunk Python path costs much
of a process's CPU at thousands of pods) and are decoded with orjson.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import yaml

IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER = "k8s-simulator"
#: A listing of objects' metadata only (what kubectl get -o name asks for).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io, application/json"
#: Aggregated discovery (GA in Kubernetes 1.30, beta from 1.26): every group's versions and kinds in
#: one answer each for /api and /apis, instead of one request per group version (28 in a running simulator,
#: which the recorder repeated every 30 s). Older servers answer the plain form, and each version is read.
AGGREGATED_DISCOVERY = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
                        "application/json")

log = logging.getLogger(__name__)


class KubeError(Exception):
    """A non-2xx answer of the apiserver, with its Status object's fields."""

    def __init__(self, status: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list(self.details.get("causes") or [])


class UnknownKind(KubeError):
    """The cluster does not serve this apiVersion/kind."""

    def __init__(self, api_version: str, kind: str):
        super().__init__(404, "NotFound", f'no kind "{kind}" is registered for version "{api_version}" in the cluster')
        self.api_version = api_version
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class ResourceInfo:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str]
    short_names: frozenset[str] = frozenset()  # deploy, po, hpa: what kubectl also accepts

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Where the apiserver is and how to log in, with inline data written to files."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _materialise(data_b64: str, suffix: str) -> str:
    """Write an inline (base64) kubeconfig credential to a private file ssl can load."""
    fd, path = tempfile.mkstemp(prefix="k8sim-", suffix=suffix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64decode(data_b64))
    return path


def credentials(kubeconfig: Path | None) -> Credentials:
    """A kubeconfig's current context, or the in-cluster service account."""
    if kubeconfig is None or not Path(kubeconfig).exists():
        if (IN_CLUSTER / "token").exists():
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
            return Credentials(f"https://{host}:{port}", ca_file=str(IN_CLUSTER / "ca.crt"),
                               token=(IN_CLUSTER / "token").read_text().strip())
        raise KubeError(503, "NoKubeconfig", f"kubeconfig {kubeconfig} not found and not in a cluster")
    config = yaml.safe_load(Path(kubeconfig).read_text())
    current = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user: dict[str, Any] = next(
        (u["user"] for u in config.get("users", []) if u["name"] == context.get("user")), {})
    base = Path(kubeconfig).parent

    def file_of(key: str, suffix: str, source: Mapping[str, Any]) -> str | None:
        if source.get(f"{key}-data"):
            return _materialise(source[f"{key}-data"], suffix)
        if source.get(key):
            return str((base / source[key]).resolve())
        return None

    return Credentials(
        server=cluster["server"],
        ca_file=file_of("certificate-authority", ".crt", cluster),
        cert_file=file_of("client-certificate", ".crt", user),
        key_file=file_of("client-key", ".key", user),
        token=user.get("token"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


#: What discovery finds: (apiVersion, kind) → where it lives, each group's preferred version (and
#: core v1), and the group versions that could not be read (their kinds unknown, not gone).
Discovery = tuple[dict[tuple[str, str], ResourceInfo], set[str], set[str]]


def from_aggregated(documents: list[Mapping[str, Any]]) -> Discovery:
    """Discovery from aggregated documents (APIGroupDiscoveryList of /api and /apis): a group's
    versions come in order of preference; a version marked Stale (an aggregated API the apiserver
    could not ask) is unreachable, as a failed request is in the per-version form."""
    found: dict[tuple[str, str], ResourceInfo] = {}
    preferred: set[str] = set()
    unreachable: set[str] = set()
    for document in documents:
        for group in document.get("items") or []:
            name = (group.get("metadata") or {}).get("name") or ""
            for index, version in enumerate(group.get("versions") or []):
                gv = f"{name}/{version['version']}" if name else version["version"]
                if index == 0:
                    preferred.add(gv)
                if version.get("freshness") == "Stale":
                    unreachable.add(gv)
                    continue
                for res in version.get("resources") or []:
                    kind = (res.get("responseKind") or {}).get("kind")
                    if kind:
                        found[(gv, kind)] = ResourceInfo(gv, kind, res["resource"], res.get("scope") == "Namespaced",
                                                         frozenset(res.get("verbs") or []),
                                                         frozenset(res.get("shortNames") or []))
    return found, preferred, unreachable


class Kube:
    """Async client of one cluster. Create once per process; close with :meth:`close`."""

    def __init__(self, kubeconfig: Path | None, *, timeout: float = 30.0, max_connections: int = 50,
                 agent: str = "k8sim"):
        creds = credentials(kubeconfig)
        # Compressing megabytes of listings costs both ends CPU that a local link never repays.
        # The agent names the process in the apiserver's audit log and metrics (who deleted what).
        headers = {"Accept-Encoding": "identity", "User-Agent": agent}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        self._creds, self._headers = creds, headers
        self._streams: aiohttp.ClientSession | None = None  # watches; made in the running loop
        self._http = httpx.AsyncClient(
            base_url=creds.server,
            verify=creds.ssl_context(),
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._resources: dict[tuple[str, str], ResourceInfo] = {}
        self._discovered = False
        #: Group versions the last discovery could not read (an aggregated API that is down, or a
        #: transient failure): their kinds are unknown, not known to be gone.
        self.unreachable: frozenset[str] = frozenset()
        #: Each group's preferred version (and core v1), as of the last discovery.
        self.preferred: frozenset[str] = frozenset()
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._http.aclose()
        if self._streams is not None:
            await self._streams.close()

    def _stream_session(self) -> aiohttp.ClientSession:
        if self._streams is None or self._streams.closed:
            self._streams = aiohttp.ClientSession(
                headers=self._headers, auto_decompress=False, trust_env=True,  # proxies as httpx takes them
                connector=aiohttp.TCPConnector(ssl=self._creds.ssl_context(), limit=0))
        return self._streams

    # ------------------------------------------------------------------ plumbing

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json", accept: str | None = None) -> Any:
        resp = await self._send(method, path, params=params, body=body, content_type=content_type, accept=accept)
        return resp.json() if resp.content else {}

    async def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    body: Any = None, content_type: str = "application/json", accept: str | None = None
                    ) -> httpx.Response:
        """One request; an error answer (or none) raised as a KubeError."""
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else {}
        if accept:
            headers["Accept"] = accept
        try:
            resp = await self._http.request(method, path, params=params, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeError(503, "Unavailable", f"apiserver unreachable: {exc}") from exc
        if resp.status_code >= 400:
            try:
                status = resp.json()
            except ValueError:
                status = {"message": resp.text[:500]}
            raise KubeError(resp.status_code, status.get("reason", ""), status.get("message", resp.text[:500]),
                            status.get("details"))
        return resp

    async def ready(self) -> bool:
        try:
            resp = await self._http.get("/readyz")
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    # ------------------------------------------------------------------ discovery

    async def discover(self, refresh: bool = False) -> dict[tuple[str, str], ResourceInfo]:
        """Every (apiVersion, kind) the cluster serves; refreshed on demand (new CRDs)."""
        async with self._lock:
            if self._discovered and not refresh:
                return self._resources
            aggregated = await self.discover_aggregated()
            found, preferred, unreachable = aggregated if aggregated is not None else await self.discover_each()
            self._resources, self._discovered = found, True
            self.unreachable, self.preferred = frozenset(unreachable), frozenset(preferred)
            return found

    async def discover_aggregated(self) -> Discovery | None:
        """Discovery in two requests (/api and /apis); None when the server does not aggregate it."""
        documents = []
        for path in ("/api", "/apis"):
            resp = await self._send("GET", path, accept=AGGREGATED_DISCOVERY)
            if "as=APIGroupDiscoveryList" not in resp.headers.get("content-type", ""):
                return None
            documents.append(resp.json())
        return from_aggregated(documents)

    async def discover_each(self) -> Discovery:
        """Discovery as older servers serve it: the groups, then each group version on its own."""
        versions = ["v1"]
        preferred = {"v1"}
        groups = await self.request("GET", "/apis")
        for group in groups.get("groups", []):
            versions += [v["groupVersion"] for v in group["versions"]]
            if group.get("preferredVersion"):
                preferred.add(group["preferredVersion"]["groupVersion"])
        found: dict[tuple[str, str], ResourceInfo] = {}
        unreachable: set[str] = set()

        async def one(gv: str) -> None:
            path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
            try:
                listing = await self.request("GET", path)
            except KubeError:
                unreachable.add(gv)
                return  # an aggregated API that is down: skip it, as kubectl does
            for res in listing.get("resources", []):
                if "/" in res["name"]:
                    continue
                found[(gv, res["kind"])] = ResourceInfo(gv, res["kind"], res["name"], res["namespaced"],
                                                        frozenset(res.get("verbs", [])),
                                                        frozenset(res.get("shortNames") or []))

        await asyncio.gather(*(one(gv) for gv in versions))
        return found, preferred, unreachable

    async def resource(self, api_version: str, kind: str) -> ResourceInfo:
        found = (await self.discover()).get((api_version, kind))
        if found is None:
            found = (await self.discover(refresh=True)).get((api_version, kind))
        if found is None:
            raise UnknownKind(api_version, kind)
        return found

    # ------------------------------------------------------------------ verbs

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER,
                    dry_run: bool = False, force: bool = True) -> dict[str, Any]:
        """Server-side apply of one object (namespace must be set for namespaced kinds)."""
        info = await self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata", {})
        params: dict[str, Any] = {"fieldManager": field_manager, "force": "true" if force else "false"}
        if dry_run:
            params["dryRun"] = "All"
        path = info.path(meta.get("namespace") if info.namespaced else None, meta["name"])
        result: dict[str, Any] = await self.request("PATCH", path, params=params, body=obj,
                                                    content_type="application/apply-patch+yaml")
        return result

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        info = await self.resource(api_version, kind)
        try:
            result: dict[str, Any] = await self.request("GET", info.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def list_versioned(self, api_version: str, kind: str, namespace: str | None = None, *,
                             label_selector: str | None = None, field_selector: str | None = None,
                             metadata_only: bool = False) -> tuple[list[dict[str, Any]], str]:
        """Every object (page by page) and the resourceVersion to watch from; with ``metadata_only``
        each object's metadata alone (no spec or status to send and decode)."""
        info = await self.resource(api_version, kind)
        params: dict[str, Any] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", info.path(namespace), params={**params, "limit": 500},
                                      accept=METADATA_LIST if metadata_only else None)
            for item in page.get("items") or []:  # an empty metadata-only page says null
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, str(page.get("metadata", {}).get("resourceVersion", ""))
            params["continue"] = token

    async def list(self, api_version: str, kind: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   metadata_only: bool = False) -> list[dict[str, Any]]:
        items, _ = await self.list_versioned(api_version, kind, namespace, label_selector=label_selector,
                                             field_selector=field_selector, metadata_only=metadata_only)
        return items

    async def watch(self, api_version: str, kind: str, resource_version: str | None, *,
                    timeout_seconds: int = 290) -> AsyncIterator[dict[str, Any]]:
        """Watch events of a kind (all namespaces) from a resourceVersion, with bookmarks, until the
        server ends the stream; a 410 (too old) comes as a KubeError or an ERROR event."""
        info = await self.resource(api_version, kind)
        params: dict[str, Any] = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": timeout_seconds}
        if resource_version:
            params["resourceVersion"] = resource_version
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=timeout_seconds + 30.0)
        url = self._creds.server.rstrip("/") + info.path(None)
        try:
            async with self._stream_session().get(url, params=params, timeout=timeout) as resp:
                if resp.status >= 400:
                    body = await resp.read()
                    try:
                        status = orjson.loads(body)
                    except orjson.JSONDecodeError:
                        status = {"message": body[:500].decode(errors="replace")}
                    raise KubeError(resp.status, status.get("reason", ""), status.get("message", ""))
                # One JSON document per line; a line (a large CRD) may span many chunks.
                pending = bytearray()
                async for chunk in resp.content.iter_any():
                    pending += chunk
                    if b"\n" not in chunk:
                        continue
                    *lines, rest = pending.split(b"\n")
                    pending = rest
                    for line in lines:
                        if line.strip():
                            yield orjson.loads(line)
                if pending.strip():
                    yield orjson.loads(pending)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(503, "Unavailable", f"watch of {kind} interrupted: {exc!r}") from exc
        except orjson.JSONDecodeError as exc:
            raise KubeError(503, "Unavailable", f"watch of {kind} sent a broken line: {exc}") from exc

    async def list_then_watch(self, api_version: str, kind: str, *,
                              keep_going: Callable[[KubeError], bool] = lambda exc: True,
                              max_backoff: float = 10.0) -> AsyncIterator[tuple[str, Any]]:
        """A kind's objects as an informer follows them, forever: ``("LISTED", items)`` after each
        listing, then ``(type, object)`` per watch event (ADDED, MODIFIED, DELETED).

        A dropped stream resumes from the last version seen (bookmarks move it on): a relist sees
        current states only, so it happens only when that version is too old (410). Other errors
        back off and retry, unless ``keep_going(error)`` is false, which ends the iteration."""
        version: str | None = None
        backoff = 0.5
        while True:
            try:
                if version is None:
                    items, version = await self.list_versioned(api_version, kind)
                    yield "LISTED", items
                async for event in self.watch(api_version, kind, version):
                    change, obj = event.get("type"), event.get("object") or {}
                    if change == "ERROR":
                        raise KubeError(int(obj.get("code") or 500), str(obj.get("reason", "")),
                                        str(obj.get("message", "")))
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if change == "BOOKMARK":
                        continue
                    obj.setdefault("apiVersion", api_version)
                    obj.setdefault("kind", kind)
                    yield str(change), obj
                    backoff = 0.5
            except KubeError as exc:
                if exc.status == 410:
                    version = None
                    continue
                if not keep_going(exc):
                    return
                log.info("watch of %s %s interrupted (%s); retrying in %.1f s", api_version, kind, exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)

    async def create(self, obj: Mapping[str, Any], *, field_manager: str | None = None) -> dict[str, Any]:
        info = await self.resource(obj["apiVersion"], obj["kind"])
        ns = obj.get("metadata", {}).get("namespace") if info.namespaced else None
        params = {"fieldManager": field_manager} if field_manager else None
        result: dict[str, Any] = await self.request("POST", info.path(ns), params=params, body=obj)
        return result

    async def patch(self, api_version: str, kind: str, name: str, patch: Mapping[str, Any], *,
                    namespace: str | None = None, subresource: str | None = None) -> dict[str, Any]:
        info = await self.resource(api_version, kind)
        result: dict[str, Any] = await self.request(
            "PATCH", info.path(namespace, name, subresource), body=patch,
            content_type="application/merge-patch+json")
        return result

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     propagation: str = "Background") -> bool:
        """Delete one object; False when it was already gone."""
        info = await self.resource(api_version, kind)
        try:
            await self.request("DELETE", info.path(namespace, name),
                               body={"kind": "DeleteOptions", "apiVersion": "v1",
                                     "propagationPolicy": propagation})
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True
