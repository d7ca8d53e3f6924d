"""Wiring the engine's metrics APIs into the cluster: a self-signed certificate and the APIServices.

There is no kube-proxy and pod IPs are fictional, so kube-aggregator reaches the engine on
loopback through a Service of type ExternalName (what kwokctl does for metrics-server) and
APIServices that skip TLS verification. An APIService whose backend is gone blocks namespace
deletion cluster-wide, so a clean stop removes them and every start (after a crash too)
applies them again.

While it runs, :class:`Registrar` keeps them registered: it watches APIServices, re-creates one
of ours that is deleted, and when another backend holds a group (a monitoring stack's
prometheus-adapter) it names that backend and takes the group back as the takeover setting says.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8sim import played
from k8sim.kube import FIELD_MANAGER, Kube, KubeError

from .metrics_api import GROUPS
from .settings import EngineSettings, Takeover

log = logging.getLogger(__name__)

NAMESPACE, SERVICE = played.ENGINE_SERVICE
API_VERSION, KIND = "apiregistration.k8s.io/v1", "APIService"
MANAGED_BY = {"app.kubernetes.io/managed-by": "k8s-simulator", "app.kubernetes.io/component": "metrics-apis"}


class Authority:
    """The engine's own certificate authority: a leaf for the metrics APIs' host, and one per name a
    client asks for (SNI), so kube-aggregator can verify the engine as the Service of an add-on it plays
    (KEDA's APIService carries a caBundle, which the engine sets to this CA, as KEDA's operator does)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8sim-metrics-ca")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False, encipher_only=False,
                                                  decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self._contexts: dict[str, ssl.SSLContext] = {}

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def leaf(self, folder: Path, hosts: list[str], stem: str = "tls") -> tuple[Path, Path]:
        """A key and certificate for these hosts (names or IPs), signed by this CA; (cert, key) paths."""
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.pem)
        return cert_path, key_path

    def serve_names(self, context: ssl.SSLContext, folder: Path) -> None:
        """Answer a client naming a Service (``<name>.<namespace>.svc``) with a certificate for that name."""
        def pick(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
            if not server_name or not server_name.endswith(".svc") or len(server_name) > 253:
                return None  # the default certificate (the metrics APIs' host)
            found = self._contexts.get(server_name)
            if found is None:
                cert, key = self.leaf(folder / "sni", [server_name], stem=server_name)
                found = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                found.load_cert_chain(cert, key)
                self._contexts[server_name] = found
            sock.context = found
            return None
        context.sni_callback = pick


def self_signed(folder: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A key and certificate for these hosts, signed by a fresh authority of its own."""
    return Authority().leaf(folder, hosts)


def objects(host: str, port: int) -> list[dict[str, Any]]:
    """The ExternalName Service and one APIService per group version."""
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": MANAGED_BY,
                            "annotations": {played.ENGINE_PORT_ANNOTATION: str(port)}},
               "spec": {"type": "ExternalName", "externalName": host}}
    apiservices = [{
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": f"{version}.{group}", "labels": MANAGED_BY},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": 100, "versionPriority": 100,
                 "insecureSkipTLSVerify": True, "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port}},
    } for group, version in GROUPS.items()]
    return [service, *apiservices]


#: Re-read our APIServices this often without any watch event: a safety net, the watch is what reacts.
RESYNC_SECONDS = 30.0
#: After a failed reconcile (the apiserver restarting), try again this soon.
RETRY_SECONDS = 2.0


def holder(apiservice: Mapping[str, Any]) -> str | None:
    """The Service behind an APIService as namespace/name; None when kube-apiserver serves it itself."""
    service = (apiservice.get("spec") or {}).get("service")
    if not service:
        return None
    return f"{service.get('namespace', '')}/{service.get('name', '')}"


def is_ours(apiservice: Mapping[str, Any]) -> bool:
    """Backed by the simulator's Service, whichever engine (port) registered it."""
    return holder(apiservice) == f"{NAMESPACE}/{SERVICE}"


def applied_by_us(apiservice: Mapping[str, Any]) -> bool:
    """Whether the engine's field manager still owns fields of this APIService."""
    return any(entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
               for entry in (apiservice.get("metadata") or {}).get("managedFields") or [])


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _owned_by_others(apiservice: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Spec fields (and spec.service fields) another field manager owns."""
    spec: set[str] = set()
    service: set[str] = set()
    for entry in (apiservice.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply":
            continue
        fields = ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        spec |= {k.removeprefix("f:") for k in fields}
        service |= {k.removeprefix("f:") for k in fields.get("f:service") or {}}
    # kubectl's client-side apply records no ownership of a value it left unchanged; what it applied is in
    # its annotation.
    last = (apiservice.get("metadata") or {}).get("annotations", {}).get(LAST_APPLIED)
    if last:
        try:
            applied = (json.loads(last).get("spec") or {})
        except (ValueError, AttributeError):
            applied = {}
        if isinstance(applied, dict):
            spec |= set(applied)
            service |= set(applied.get("service") or {}) if isinstance(applied.get("service"), dict) else set()
    return spec, service


def released(apiservice: Mapping[str, Any]) -> dict[str, Any]:
    """What the engine applies to let go of an APIService another backend took: the fields every APIService
    has, as they are now, and of the optional ones (the port, skipping TLS verification, a CA bundle) only
    those another manager set too, so the backend's own defaults apply (port 443, verification on)."""
    spec = dict(apiservice.get("spec") or {})
    others, others_service = _owned_by_others(apiservice)
    service = {k: v for k, v in (spec.get("service") or {}).items() if k != "port" or k in others_service}
    kept = {k: v for k, v in spec.items() if k in ("group", "version", "groupPriorityMinimum", "versionPriority")
            or (k in ("insecureSkipTLSVerify", "caBundle") and k in others)}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": apiservice["metadata"]["name"]},
            "spec": {**kept, "service": service}}


def available(apiservice: Mapping[str, Any]) -> Mapping[str, Any]:
    """kube-aggregator's Available condition ({} before it has looked)."""
    for condition in (apiservice.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Available":
            return dict(condition)
    return {}


@dataclasses.dataclass
class Foreign:
    """Another backend holding one of our group versions, as last seen."""

    apiservice: str
    group: str
    version: str
    service: str | None
    uid: str
    available: str
    reason: str
    message: str
    seen_at: str
    unavailable_since: float | None  # on the registrar's monotonic clock: when Available=False was first seen

    def view(self, now: float) -> dict[str, Any]:
        return {"apiservice": self.apiservice, "group": self.group, "version": self.version,
                "service": self.service or "(kube-apiserver itself)", "available": self.available,
                "reason": self.reason, "message": self.message, "seen_at": self.seen_at,
                "unavailable_seconds": (None if self.unavailable_since is None
                                        else round(now - self.unavailable_since, 1))}


def decide(current: Mapping[str, Any] | None, known: Foreign | None, *, policy: Takeover, grace: float,
           now: float, startup: bool = False) -> tuple[str, Foreign | None]:
    """What to do about one of our group versions, given its APIService now (None: there is none) and
    what was known of a foreign holder: ``("create" | "claim" | "service" | "take" | "", foreign holder)``.

    ``claim`` (at start only) re-applies ours whichever engine registered it: the last engine started
    serves. Afterwards another engine's registration is left alone, so two engines never fight.
    ``service`` re-applies the ExternalName Service alone (another engine's clean stop deleted it)."""
    if current is None:
        return "create", None
    if is_ours(current):
        if startup:
            return "claim", None
        return ("service" if available(current).get("reason") == "ServiceNotFound" else ""), None
    meta, spec = current.get("metadata") or {}, current.get("spec") or {}
    condition = available(current)
    status = str(condition.get("status", "Unknown"))
    service = holder(current)
    same = known is not None and known.uid == meta.get("uid", "") and known.service == service
    since = None
    if status == "False":
        since = known.unavailable_since if same and known is not None and known.unavailable_since is not None else now
    foreign = Foreign(apiservice=str(meta.get("name", "")), group=str(spec.get("group", "")),
                      version=str(spec.get("version", "")), service=service, uid=str(meta.get("uid", "")),
                      available=status, reason=str(condition.get("reason", "")),
                      message=str(condition.get("message", "")),
                      seen_at=known.seen_at if same and known is not None else _stamp(), unavailable_since=since)
    if policy == Takeover.ALWAYS or (policy == Takeover.UNAVAILABLE and since is not None and now - since >= grace):
        return "take", foreign
    return "", foreign


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def delete_exact(kube: Kube, obj: Mapping[str, Any]) -> bool:
    """Delete this very APIService (same uid and resourceVersion): one that changed since it was read
    is decided again, not deleted blind. False when it had changed or gone."""
    meta = obj.get("metadata") or {}
    preconditions = {k: meta[k] for k in ("uid", "resourceVersion") if meta.get(k)}
    info = await kube.resource(API_VERSION, KIND)
    try:
        await kube.request("DELETE", info.path(None, meta["name"]),
                           body={"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": preconditions})
    except KubeError as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


class Registrar:
    """Keeps the engine's APIServices registered while it runs (see the module's docstring)."""

    def __init__(self, kube: Kube, settings: EngineSettings, clock: Callable[[], float] = time.monotonic):
        self.kube, self.clock = kube, clock
        self.policy, self.grace = settings.metrics_api_takeover, settings.metrics_api_takeover_grace
        service, *apiservices = objects(settings.metrics_api_host, settings.metrics_api_port)
        self.service = service
        self.desired = {a["metadata"]["name"]: a for a in apiservices}
        self.foreign: dict[str, Foreign] = {}
        self.takeovers: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.watching = False
        self.failed = False
        self._changed = asyncio.Event()

    def view(self) -> dict[str, Any]:
        """What /health shows: the policy, who else holds a group, and the takeovers so far (newest last)."""
        now = self.clock()
        return {"takeover": str(self.policy), "takeover_grace_seconds": self.grace, "watching": self.watching,
                "foreign": [f.view(now) for _, f in sorted(self.foreign.items())], "takeovers": list(self.takeovers)}

    async def reconcile(self, *, startup: bool = False) -> None:
        """One pass over our group versions, each decided on a fresh read (the watch only says when)."""
        for name, desired in self.desired.items():
            current = await self.kube.get(API_VERSION, KIND, name)
            known = self.foreign.get(name)
            action, foreign = decide(current, known, policy=self.policy, grace=self.grace, now=self.clock(),
                                     startup=startup)
            if foreign is not None and current is not None and applied_by_us(current):
                # Applied over ours (same name): fields only we set, such as our port, would stay and point
                # the user's APIService at a port its Service lacks. Let go of them, as a fresh object has none.
                await self.kube.apply(released(current))
                log.info("metrics APIs: %s is another backend's now; the engine's fields released", name)
            if foreign is not None:
                if known is None:
                    log.warning("metrics_api_foreign apiservice=%s service=%s available=%s reason=%s takeover=%s",
                                name, foreign.service, foreign.available, foreign.reason, self.policy)
                self.foreign[name] = foreign
            if action == "service":
                log.info("metrics APIs: the Service %s/%s was gone, applied again", NAMESPACE, SERVICE)
                await self.kube.apply(self.service)
            elif action in ("create", "claim"):
                await self.kube.apply(self.service)
                await self.kube.apply(desired)
                if action == "create" and not startup:
                    self.record(name, known, "deleted", "the APIService was deleted; registered again")
            elif action == "take" and foreign is not None and current is not None:
                if not await delete_exact(self.kube, current):
                    continue  # it changed under us: the next pass decides on what it is now
                await self.kube.apply(self.service)
                await self.kube.apply(desired)
                why = ("takeover is 'always'" if self.policy == Takeover.ALWAYS else
                       f"unavailable for {self.clock() - (foreign.unavailable_since or self.clock()):.0f} s "
                       f"({foreign.reason}: {foreign.message})")
                self.record(name, foreign, str(self.policy), why)
            if action or foreign is None:
                self.foreign.pop(name, None)

    def record(self, name: str, previous: Foreign | None, reason: str, detail: str) -> None:
        entry = {"at": _stamp(), "apiservice": name, "from": previous.service if previous else None,
                 "reason": reason, "detail": detail}
        self.takeovers.append(entry)
        log.warning("metrics_api_takeover apiservice=%s from=%s reason=%s detail=%r", name, entry["from"], reason,
                    detail)

    def next_check(self) -> float:
        """Seconds until a pass is due without an event: when a foreign backend's grace ends, soon after a
        failure, else the safety net."""
        if self.failed:
            return RETRY_SECONDS
        due = [f.unavailable_since + self.grace - self.clock() for f in self.foreign.values()
               if f.unavailable_since is not None and self.policy == Takeover.UNAVAILABLE]
        return max(0.1, min(due) + 0.05) if due else RESYNC_SECONDS

    async def _watch(self) -> None:
        async for change, payload in self.kube.list_then_watch(API_VERSION, KIND):
            self.watching = True
            if change == "LISTED" or (payload.get("metadata") or {}).get("name") in self.desired:
                self._changed.set()

    async def run(self) -> None:
        """Reconcile on every change to one of our APIServices (and when a grace period ends) until cancelled."""
        watcher = asyncio.create_task(self._watch(), name="watch APIService")
        try:
            while True:
                self._changed.clear()
                try:
                    await self.reconcile()
                    self.failed = False
                except KubeError as exc:
                    self.failed = True
                    log.warning("metrics APIs not reconciled (the cluster said: %s)", exc.message)
                try:
                    async with asyncio.timeout(self.next_check()):
                        await self._changed.wait()
                except TimeoutError:
                    pass
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def unregister(kube: Kube) -> None:
    """Remove our APIServices (and the Service): a stopped engine must not block the cluster. Another
    backend's APIService for the same group (the user's own adapter) is not ours to delete."""
    service, *apiservices = objects("", 0)
    for obj in apiservices:
        try:
            current = await kube.get(API_VERSION, KIND, obj["metadata"]["name"])
            if current is not None and is_ours(current):
                await delete_exact(kube, current)
        except KubeError:
            continue  # the cluster is going away too, or it was never registered
    try:
        await kube.delete(service["apiVersion"], service["kind"], service["metadata"]["name"], NAMESPACE)
    except KubeError:
        pass
