"""Kopf handlers: the cluster add-ons and the Scenario player; startup runs the lifecycle recorder
(its own watches, see :mod:`recorder`).

The add-ons are ``on.event`` handlers: no finalizers and no annotations are put on user
objects, and each add-on action is idempotent, so replays and restarts are safe.
Scenarios (our own resource) each get a daemon, whose finalizer lets a deletion restore first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import kopf
import yaml

from k8sim import deploy, lifecycle, scenarios, store
from k8sim.kube import Kube, KubeError
from k8sim.kube import credentials as kube_credentials
from k8sim.settings import tune_gc

from . import addons, player
from .recorder import Recorder, Watches
from .settings import OperatorSettings

log = logging.getLogger(__name__)

@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Log in with the simulator's kubeconfig (K8SIM_KUBECONFIG), or in-cluster."""
    creds = kube_credentials(OperatorSettings().kubeconfig)
    return kopf.ConnectionInfo(server=creds.server, ca_path=creds.ca_file, insecure=creds.insecure,
                               certificate_path=creds.cert_file, private_key_path=creds.key_file,
                               token=creds.token)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    conf = OperatorSettings()
    tune_gc(conf)
    logging.getLogger("k8sim_operator").setLevel(conf.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    # A passive recorder: no k8s Events about our own handling, no progress annotations.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.queueing.worker_limit = 2000
    # A deleted Scenario's daemon gives back what it hit within seconds: wait for that, then look
    # again every second (not Kopf's default minute) before letting the finalizer go.
    settings.background.instant_exit_timeout = 5.0
    settings.background.cancellation_polling = 1.0
    kube = Kube(conf.kubeconfig, agent="k8sim-operator")
    # Its own client: a watch per kind holds a connection each, which must not starve the add-ons.
    memo.watch_kube = Kube(conf.kubeconfig, max_connections=1000, agent="k8sim-recorder")
    recorder = Recorder(conf, kube)
    memo.conf, memo.kube, memo.recorder = conf, kube, recorder
    memo.lb_lock = asyncio.Lock()
    memo.lb_pool = addons.parse_pool(conf.lb_pool)
    memo.tasks = [asyncio.create_task(recorder.run(), name="recorder"),
                  asyncio.create_task(Watches(memo.watch_kube, recorder, resume=True).run(), name="watches"),
                  asyncio.create_task(recorder.sweep_forever(), name="sweep")]
    background = scenarios.background(conf.profile, conf.background)
    if background.active and conf.speed <= 1:  # an accelerated clock plays them in the engine's model
        memo.tasks.append(asyncio.create_task(player.background(
            kube, background, conf.seed, conf.background_interval, conf.background_selector), name="background"))
    for obj in yaml.safe_load_all(conf.storage_classes.read_text()):
        if obj:
            await kube.apply(obj, field_manager="k8sim-operator")
    crds = [c for c in yaml.safe_load_all(conf.scenario_crd.read_text()) if c]
    for crd in crds:
        await kube.apply(crd, field_manager="k8sim-operator")
    await deploy.wait_established(kube, [c["metadata"]["name"] for c in crds], 30)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    recorder: Recorder = memo.recorder
    await recorder.drained(timeout=10)
    for task in memo.tasks:
        task.cancel()
    await asyncio.gather(*memo.tasks, return_exceptions=True)
    await recorder.close()
    await memo.kube.close()
    await memo.watch_kube.close()


# --------------------------------------------------------------------------- storage


async def _storage_class(memo: kopf.Memo, name: str | None) -> dict[str, Any] | None:
    kube: Kube = memo.kube
    if name is None:
        classes = await kube.list("storage.k8s.io/v1", "StorageClass")
        return next((c for c in classes if (c["metadata"].get("annotations") or {}).get(
            "storageclass.kubernetes.io/is-default-class") == "true"), None)
    return await kube.get("storage.k8s.io/v1", "StorageClass", name)


@kopf.on.event("v1", "persistentvolumeclaims")
async def provision(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        return
    pvc = dict(body)
    storage_class = await _storage_class(memo, (pvc.get("spec") or {}).get("storageClassName"))
    if not addons.wants_volume(pvc, storage_class, memo.conf.provisioner):
        return
    assert storage_class is not None
    volume = addons.volume_for_claim(pvc, storage_class, memo.conf.provisioner)
    try:
        await memo.kube.create(volume)
    except KubeError as exc:
        if exc.status != 409:  # already provisioned by an earlier event
            raise
    log.info("provisioned %s for %s/%s", volume["metadata"]["name"], pvc["metadata"]["namespace"],
             pvc["metadata"]["name"])


@kopf.on.event("v1", "persistentvolumes")
async def reclaim(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type != "DELETED" and addons.should_reclaim(body, memo.conf.provisioner):
        await memo.kube.delete("v1", "PersistentVolume", body["metadata"]["name"])


# --------------------------------------------------------------------------- load balancers


@kopf.on.event("v1", "services")
async def load_balancer(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED" or not addons.needs_lb_address(body):
        return
    async with memo.lb_lock:  # two Services must never get the same address
        services = await memo.kube.list("v1", "Service")
        current = next((s for s in services if s["metadata"]["uid"] == body["metadata"]["uid"]), None)
        if current is None or not addons.needs_lb_address(current):
            return
        used = [str(i["ip"]) for s in services for i in addons.lb_ingress(s) if i.get("ip")]
        ip = addons.lb_address(memo.lb_pool, used, reserved=[memo.conf.ingress_address])
        if ip is None:
            log.warning("load-balancer pool %s exhausted; %s/%s stays pending", memo.conf.lb_pool,
                        body["metadata"]["namespace"], body["metadata"]["name"])
            return
        await memo.kube.patch("v1", "Service", body["metadata"]["name"],
                              addons.status_ingress(ip, (body.get("spec") or {}).get("ports") or []),
                              namespace=body["metadata"]["namespace"], subresource="status")


@kopf.on.event("networking.k8s.io", "v1", "ingresses")
async def ingress_address(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED" or addons.lb_ingress(body):
        return
    await memo.kube.patch("networking.k8s.io/v1", "Ingress", body["metadata"]["name"],
                          addons.status_ingress(memo.conf.ingress_address, service=False),
                          namespace=body["metadata"]["namespace"], subresource="status")


# --------------------------------------------------------------------------- scenarios


async def _tenants(memo: kopf.Memo) -> dict[str, str]:
    """namespace → tenant: the namespaces tenants' deploys made (from the store), overridden by labels."""
    found: dict[str, str] = {}
    pool = memo.recorder.pool
    if pool is not None:
        try:
            async with pool.acquire() as conn:
                found.update(await store.namespace_tenants(conn))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("tenant namespaces not read from the store: %s", exc)
    for ns in await memo.kube.list("v1", "Namespace"):
        if tenant := lifecycle.tenant_of(ns):
            found[ns["metadata"]["name"]] = tenant
    return found


# A graceful stop first: the run ends and gives back what it hit before the finalizer lets go.
@kopf.daemon(scenarios.GROUP, scenarios.VERSION, scenarios.PLURAL, cancellation_backoff=30, cancellation_timeout=30)
async def scenario(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any) -> None:
    """Play a Scenario's runs; deleting it (or stopping the operator) ends the current run and restores."""
    await player.play(memo.kube, dict(body), stopped, lambda: _tenants(memo))
