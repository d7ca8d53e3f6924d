"""Wiring the engine's metrics APIs into the cluster: a self-signed certificate and the APIServices.

There is no kube-proxy and pod IPs are fictional, so kube-aggregator reaches the engine on
loopback through a Service of type ExternalName (what kwokctl does for metrics-server) and
APIServices that skip TLS verification. An APIService whose backend is gone blocks namespace
deletion cluster-wide, so a clean stop removes them and every start (after a crash too)
applies them again.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8sim.kube import Kube, KubeError

from .metrics_api import GROUPS

NAMESPACE = "kube-system"
SERVICE = "k8sim-metrics"
MANAGED_BY = {"app.kubernetes.io/managed-by": "k8s-simulator", "app.kubernetes.io/component": "metrics-apis"}


def self_signed(folder: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A fresh key and certificate for these hosts (names or IPs), valid a year; (cert, key) paths."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8sim-metrics")])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def objects(host: str, port: int) -> list[dict[str, Any]]:
    """The ExternalName Service and one APIService per group version."""
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": MANAGED_BY},
               "spec": {"type": "ExternalName", "externalName": host}}
    apiservices = [{
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": f"{version}.{group}", "labels": MANAGED_BY},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": 100, "versionPriority": 100,
                 "insecureSkipTLSVerify": True, "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port}},
    } for group, version in GROUPS.items()]
    return [service, *apiservices]


async def register(kube: Kube, host: str, port: int) -> None:
    """Apply (or repair) the Service and APIServices so they point at this engine."""
    for obj in objects(host, port):
        await kube.apply(obj)


async def unregister(kube: Kube) -> None:
    """Remove the APIServices (and the Service): a stopped engine must not block the cluster."""
    for obj in reversed(objects("", 0)):
        meta = obj["metadata"]
        try:
            await kube.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        except KubeError:
            continue  # the cluster is going away too, or it was never registered
