"""The local cluster's egress proxy: kube-apiserver's "cluster" traffic (APIService backends, webhooks,
kubelets) goes through it, as it would through Konnectivity, because no pod network exists here.

kube-apiserver dials it on a Unix socket (its EgressSelectorConfiguration, HTTP CONNECT); a connection
for the Service of a metrics add-on the simulator plays goes to the engine (:func:`k8sim.played.egress_target`),
every other one to the address asked for. Run by ``python -m k8sim egress``, started with the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from k8sim import played
from k8sim.kube import Kube, KubeError

log = logging.getLogger("k8sim.egress")

#: How long one listing of Services and APIServices answers routing questions: CONNECTs come in bursts
#: (kube-aggregator's availability checks, an HPA's sync) and a new APIService must route within seconds.
LISTING_TTL = 1.0
CONNECT_TIMEOUT = 5.0
MAX_HEADER = 8192


def selector_configuration(socket: Path) -> str:
    """kube-apiserver's --egress-selector-config-file: the cluster's traffic through the socket, the
    control plane's and etcd's direct."""
    return yaml.safe_dump({
        "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
        "egressSelections": [
            {"name": "cluster", "connection": {"proxyProtocol": "HTTPConnect",
                                               "transport": {"uds": {"udsName": str(socket)}}}},
            {"name": "controlplane", "connection": {"proxyProtocol": "Direct"}},
            {"name": "etcd", "connection": {"proxyProtocol": "Direct"}},
        ]}, sort_keys=False)


class Router:
    """Answers where a CONNECT goes, from a recent listing of the cluster's Services and APIServices."""

    def __init__(self, kube: Kube):
        self.kube = kube
        self._listed: tuple[float, list[Any], list[Any], list[Any]] | None = None
        self._lock = asyncio.Lock()

    async def listing(self) -> tuple[list[Any], list[Any], list[Any]]:
        async with self._lock:
            if self._listed is None or time.monotonic() - self._listed[0] > LISTING_TTL:
                services, apiservices, slices = await asyncio.gather(
                    self.kube.list("v1", "Service"), self.kube.list("apiregistration.k8s.io/v1", "APIService"),
                    self.kube.list("discovery.k8s.io/v1", "EndpointSlice"))
                self._listed = (time.monotonic(), services, apiservices, slices)
            return self._listed[1], self._listed[2], self._listed[3]

    async def route(self, host: str, port: int) -> tuple[str, int]:
        if played.is_loopback(host):
            return host, port
        try:
            services, apiservices, slices = await self.listing()
        except KubeError as exc:
            log.warning("egress: cannot list Services (%s); dialing %s:%d itself", exc.message, host, port)
            return host, port
        return played.egress_target(host, port, services, apiservices, slices) or (host, port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def handle(router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        writer.close()
        return
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or parts[0] != "CONNECT" or ":" not in parts[1]:
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
        writer.close()
        return
    host, _, port_text = parts[1].rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit():
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        writer.close()
        return
    target = await router.route(host, int(port_text))
    try:
        upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.info("egress: %s:%s (via %s:%d) unreachable: %s", host, port_text, *target, exc)
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        writer.close()
        return
    if target != (host, int(port_text)):
        log.debug("egress: %s:%s played by the engine at %s:%d", host, port_text, *target)
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


def _prepare(socket: Path) -> None:
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)  # left by a proxy that was killed


async def serve(socket: Path, kubeconfig: Path) -> None:
    """Serve CONNECTs on the socket until cancelled."""
    _prepare(socket)
    kube = Kube(kubeconfig, agent="k8sim-egress")
    router = Router(kube)
    server = await asyncio.start_unix_server(lambda r, w: handle(router, r, w), path=str(socket), limit=MAX_HEADER)
    os.chmod(socket, 0o600)  # kube-apiserver runs as the same user; nobody else may tunnel through it
    log.info("egress proxy on %s", socket)
    try:
        async with server:
            await server.serve_forever()
    finally:
        await kube.close()
        os.unlink(socket)
