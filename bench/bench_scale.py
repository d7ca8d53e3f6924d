"""Scale: the cluster alone (raw) against the whole simulator (full), side by side in one run.

For each pod count, on dedicated bench nodes (100 pods per node, 100 pods per Deployment): seconds
until every pod is Ready, and until every pod is gone after the Deployments are deleted; for each node
count, seconds until every node is Ready. Each phase starts once the previous one's writes have
stopped (KWOK's late deletions, status updates). Over each phase, per process: CPU seconds and peak RSS;
the apiserver's requests by verb and resource (its own /metrics). In full mode it also checks that
the recorder's history holds every pod's created, running and deleted transitions, and how long
after the last deletion it caught up. Prints full/raw ratios. With --py-spy DIR, records the sampled
stacks of each Python process (py-spy from PyPI; collapsed stacks, one line per stack and its count,
which grep and sort read and flame graph tools draw) creating, at rest and deleting in the full runs;
with --pprof DIR, the apiserver's, scheduler's and controller-manager's own CPU profiles of each
phase (Go's pprof; read with `go tool pprof -top -cum FILE`).

    python bench/bench_scale.py [--pods 1000,10000] [--nodes 1000,5000] [--modes raw,full] [--py-spy DIR]
                                [--pprof DIR] [--warm-up 1000] [--rounds 1]

Nothing of the simulator may be running besides the cluster and services (`make up`, not `make run`).
Each run also writes its figures to bench/results/bench_scale-<UTC time>.json (K8SIM_BENCH_RESULTS:
another folder, or '' for none), from which the documentation's scale results page is generated.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import TAINT, bench_nodes, delete_nodes
from common import simulator, write_results

from k8sim import kube, store
from k8sim.local import build, cluster, layout, services
from k8sim.local.settings import ClusterSettings

PODS_PER_NODE = 100
REST_SECONDS = 30  # sampled with every pod Running, before the deletion
PPROF_SECONDS = 30
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

#: Which process is which, by its command line (several postgres backends count as one role).
ROLES = [
    ("kube-apiserver", re.compile(r"(^|/)kube-apiserver\b")),
    ("etcd", re.compile(r"(^|/)etcd\b")),
    ("kube-controller-manager", re.compile(r"(^|/)kube-controller-manager\b")),
    ("kube-scheduler", re.compile(r"(^|/)kube-scheduler\b")),
    ("kwok", re.compile(r"(^|/)kwok\b(?!ctl)")),
    ("operator", re.compile(r"kopf .*k8sim_operator")),
    ("api", re.compile(r"-m k8sim_api\b")),
    ("engine", re.compile(r"-m k8sim_engine\b")),
    ("postgres", re.compile(r"^postgres\b|/postgres\b")),
    ("redis", re.compile(r"redis-server")),
]
PYTHON_ROLES = ("operator", "api", "engine")


def processes() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        for role, pattern in ROLES:
            if cmdline and pattern.search(cmdline):
                found[int(entry.name)] = role
                break
    return found


def cpu_and_rss(pid: int) -> tuple[float, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK, rss_pages * PAGE  # utime + stime


@dataclass
class Usage:
    """CPU seconds and peak RSS per role over one phase, sampled twice a second."""

    cpu: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)


@contextmanager
def sampled() -> Iterator[Usage]:
    usage = Usage()
    first: dict[int, float] = {}
    last: dict[int, tuple[str, float]] = {}
    stop = threading.Event()

    def sample() -> None:
        roles = processes()
        rss: dict[str, int] = {}
        for pid, role in roles.items():
            got = cpu_and_rss(pid)
            if got is None:
                continue
            first.setdefault(pid, got[0])
            last[pid] = (role, got[0])
            rss[role] = rss.get(role, 0) + got[1]
        for role, value in rss.items():
            usage.peak_rss[role] = max(usage.peak_rss.get(role, 0), value)

    def loop() -> None:
        while not stop.wait(0.5):
            sample()

    sample()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield usage
    finally:
        stop.set()
        thread.join()
        sample()
        for pid, (role, cpu) in last.items():
            usage.cpu[role] = usage.cpu.get(role, 0.0) + cpu - first[pid]


class Poller:
    """The bench's own reads, on one kept-alive connection: a kubectl process per poll, twice a
    second, cost both modes CPU and the apiserver a TLS handshake each."""

    def __init__(self, settings: ClusterSettings) -> None:
        creds = kube.credentials(settings.kubeconfig)
        headers = {"User-Agent": "k8sim-bench"} | ({"Authorization": f"Bearer {creds.token}"} if creds.token else {})
        self.http = httpx.Client(base_url=creds.server, verify=creds.ssl_context(), headers=headers, timeout=60)

    def text(self, path: str) -> str:
        response = self.http.get(path)
        response.raise_for_status()
        return response.text

    def json(self, path: str) -> Any:
        return json.loads(self.text(path))


_pollers: dict[Path, Poller] = {}


def poller(settings: ClusterSettings) -> Poller:
    if settings.kubeconfig not in _pollers:
        _pollers[settings.kubeconfig] = Poller(settings)
    return _pollers[settings.kubeconfig]


def apiserver_requests(settings: ClusterSettings) -> dict[tuple[str, str], float]:
    """apiserver_request_total summed by (verb, resource)."""
    text = poller(settings).text("/metrics")
    totals: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        key = (labels.get("verb", ""), labels.get("resource", "") +
               (f"/{labels['subresource']}" if labels.get("subresource") else ""))
        totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


#: Writes that go on in a quiet cluster (heartbeats), left out when waiting for quiet.
BACKGROUND_WRITES = {"leases", "nodes/status", "nodes"}


def settle(settings: ClusterSettings, quiet: float = 10.0, window: float = 3.0, timeout: float = 180.0) -> float:
    """Wait until the control plane writes fewer than ``quiet`` objects a second besides heartbeats
    (the previous phase's tail: KWOK's late deletions of pods already gone, events, status updates
    would otherwise be charged to the next phase); seconds waited."""
    started = time.monotonic()
    before = apiserver_requests(settings)
    while time.monotonic() - started < timeout:
        time.sleep(window)
        after = apiserver_requests(settings)
        writes = sum(n for (verb, resource), n in delta(before, after).items()
                     if verb in {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION"}
                     and resource not in BACKGROUND_WRITES)
        if writes < quiet * window:
            break
        before = after
    return time.monotonic() - started


def watches(settings: ClusterSettings) -> float:
    text = poller(settings).text("/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line)


def pod_count(settings: ClusterSettings, ns: str) -> int:
    page = poller(settings).json(f"/api/v1/namespaces/{ns}/pods?limit=1")
    return len(page.get("items") or []) + int(page["metadata"].get("remainingItemCount") or 0)


def create_pods(settings: ClusterSettings, count: int, pool: str, per_deployment: int) -> tuple[str, float]:
    """`count` pods on the bench pool, `per_deployment` to a Deployment; seconds until all are Ready."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(settings, "create", "namespace", ns)
    deployments = []
    for index, start in enumerate(range(0, count, per_deployment)):
        name = f"load-{index}"
        deployments.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": min(per_deployment, count - start), "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "nodeSelector": {"k8sim.io/bench": pool}, "tolerations": [{**TAINT, "operator": "Equal"}],
                         "containers": [{"name": "app", "image": "bench:1",
                                         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}},
        })
    started = time.monotonic()
    cluster.kubectl(settings, "apply", "-f", "-", stdin=yaml.safe_dump_all(deployments))
    while True:
        listing = poller(settings).json(f"/apis/apps/v1/namespaces/{ns}/deployments")
        ready = sum(int((d.get("status") or {}).get("readyReplicas") or 0) for d in listing["items"])
        if ready >= count:
            return ns, time.monotonic() - started
        if time.monotonic() - started > 3600:
            raise RuntimeError(f"{count} pods not Ready after 3600 s ({ready} are)")
        time.sleep(0.5)


def delete_pods(settings: ClusterSettings, ns: str) -> float:
    """Delete the Deployments; seconds until none of their pods is left."""
    started = time.monotonic()
    cluster.kubectl(settings, "delete", "deployments", "--all", "-n", ns, "--wait=false")
    while pod_count(settings, ns):
        if time.monotonic() - started > 3600:
            raise RuntimeError(f"pods of {ns} not deleted after 3600 s")
        time.sleep(0.5)
    return time.monotonic() - started


async def history(settings: ClusterSettings, ns: str, count: int, timeout: float = 600) -> tuple[dict[str, int], float]:
    """Pods of the namespace with each of created/running/deleted recorded; seconds until complete."""
    pool = await store.connect(settings.database_url)
    started = time.monotonic()
    try:
        while True:
            rows = await pool.fetch("SELECT transition, count(DISTINCT uid) AS n FROM resource_events "
                                    "WHERE kind = 'Pod' AND namespace = $1 AND transition = ANY($2) "
                                    "GROUP BY transition", ns, ["created", "running", "deleted"])
            seen = {r["transition"]: r["n"] for r in rows}
            if all(seen.get(t, 0) >= count for t in ("created", "running", "deleted")) \
                    or time.monotonic() - started > timeout:
                return seen, time.monotonic() - started
            await asyncio.sleep(1)
    finally:
        await pool.close()


def store_load(settings: ClusterSettings) -> str:
    """What the engine evaluates every tick besides the pods (a store full of test leftovers, such as
    hundreds of alert rules, makes the full run slower than a user's would be)."""
    async def read() -> str:
        pool = await store.connect(settings.database_url)
        try:
            await store.migrate(pool)  # a fresh store has no tables until the simulator first ran
            rules = await pool.fetchval("SELECT count(*) FROM alert_rules")
            open_alerts = await pool.fetchval("SELECT count(*) FROM alert_events WHERE resolved_at IS NULL")
        finally:
            await pool.close()
        return f"{rules} alert rules, {open_alerts} open alerts"
    return asyncio.run(read())


@dataclass
class Result:
    what: str
    count: int
    seconds: float
    usage: Usage
    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else float("inf")


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def show(result: Result, mode: str) -> None:
    print(f"  [{mode}] {result.what} {result.count}: {result.seconds:.1f} s ({result.rate:.1f}/s)",
          result.extra or "")
    for role in sorted(result.usage.cpu, key=lambda r: -result.usage.cpu[r]):
        rss = gib(result.usage.peak_rss.get(role, 0))
        print(f"      {role:24} cpu {result.usage.cpu[role]:7.1f} s   peak rss {rss}")
    top = sorted(result.requests.items(), key=lambda kv: -kv[1])[:8]
    if top:
        print("      apiserver requests: " + ", ".join(f"{v} {r or '-'} {n:.0f}" for (v, r), n in top))


@contextmanager
def profiling(directory: Path | None, seconds: int) -> Iterator[None]:
    """py-spy's sampled stacks of the simulator's Python processes for the phase (best effort)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if directory is None or not Path(spy).exists():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50",
                               "--nonblocking", "--format", "raw", "-o", str(directory / f"{role}-{pid}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for pid, role in processes().items() if role in PYTHON_ROLES]
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT, not on SIGTERM
        for proc in procs:
            proc.wait(timeout=60)


def profiled_components(settings: ClusterSettings) -> dict[str, kube.Credentials]:
    """The scheduler's and controller-manager's own HTTPS addresses and the admin certificate, from
    the cluster's kwok.yaml (kwokctl scrapes their /metrics the same way; their serving certificates
    are self-signed). KWOK's controller serves no CPU profile (its /debug/pprof/ has the index only)."""
    path = layout.cluster_dir(settings) / "kwok.yaml"
    config = next((d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)
                   and d.get("kind") == "KwokctlConfiguration"), {}) if path.exists() else {}
    found = {}
    for component in config.get("components") or []:
        metric = component.get("metric") or {}
        if component.get("name") in ("kube-scheduler", "kube-controller-manager") and metric.get("certPath"):
            found[component["name"]] = kube.Credentials(
                server=f"{metric.get('scheme', 'https')}://{metric['host']}", cert_file=metric["certPath"],
                key_file=metric["keyPath"], insecure=True)
    return found


@contextmanager
def control_plane_profiles(settings: ClusterSettings, directory: Path | None, stem: str,
                           seconds: int = PPROF_SECONDS) -> Iterator[None]:
    """The control plane's own CPU profiles (Go pprof) over the phase's first seconds, one file per
    component (``apiserver-STEM.pprof``, ``kube-scheduler-STEM.pprof``, …), for
    `go tool pprof -top -cum FILE`: which handlers, plugins and controllers the time goes to. The
    scheduler and controller-manager answer the cluster's admins only (clusters created before they
    checked certificates refuse everyone: their profiles are then left out, with a note)."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)

    def fetch(name: str, credentials: kube.Credentials) -> None:
        try:
            resp = httpx.get(f"{credentials.server}/debug/pprof/profile", params={"seconds": seconds},
                             verify=credentials.ssl_context(), timeout=seconds + 30)
        except httpx.HTTPError as exc:
            print(f"  no profile of {name}: {exc}")
            return
        if resp.status_code != 200:
            print(f"  no profile of {name}: {resp.status_code} (`make cluster-delete` recreates the cluster with "
                  "profiling for admins)")
            return
        (directory / f"{name}-{stem}.pprof").write_bytes(resp.content)

    threads = [threading.Thread(target=fetch, args=item, daemon=True) for item in profiled_components(settings).items()]
    with (directory / f"apiserver-{stem}.pprof").open("wb") as out:
        proc = subprocess.Popen([build.kubectl_binary(settings), "--kubeconfig", str(settings.kubeconfig), "get",
                                 "--raw", f"/debug/pprof/profile?seconds={seconds}"],
                                stdout=out, stderr=subprocess.DEVNULL)
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            try:
                proc.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
            for thread in threads:
                thread.join(timeout=seconds + 30)


def measure(settings: ClusterSettings, mode: str, pod_counts: list[int], node_counts: list[int],
            spy: Path | None, per_deployment: int, pprof: Path | None = None) -> list[Result]:
    results = []
    for count in pod_counts:
        pool = f"bp{uuid.uuid4().hex[:4]}"
        nodes = math.ceil(count / PODS_PER_NODE)
        bench_nodes(settings, pool, nodes, PODS_PER_NODE + 10)
        try:
            print(f"  [{mode}] quiet after {settle(settings):.0f} s")
            before = apiserver_requests(settings)
            with sampled() as usage, profiling(spy and spy / f"{mode}-{count}-create", 600), \
                    control_plane_profiles(settings, pprof, f"{mode}-{count}-create"):
                ns, running = create_pods(settings, count, pool, per_deployment)
            middle = apiserver_requests(settings)
            results.append(Result("pods Running", count, running, usage, delta(before, middle)))
            settle(settings)  # the creation's tail is neither rest nor deletion
            with profiling(spy and spy / f"{mode}-{count}-rest", REST_SECONDS + 30):
                rest = at_rest(REST_SECONDS)
            results[-1].extra["at rest, % of a core"] = {r: round(100 * c / REST_SECONDS, 1)
                                                          for r, c in sorted(rest.cpu.items()) if c > 0.05}
            with sampled() as usage, profiling(spy and spy / f"{mode}-{count}-delete", 600), \
                    control_plane_profiles(settings, pprof, f"{mode}-{count}-delete"):
                deleted = delete_pods(settings, ns)
            results.append(Result("pods deleted", count, deleted, usage, delta(middle, apiserver_requests(settings))))
            if mode == "full":
                seen, lag = asyncio.run(history(settings, ns, count))
                complete = all(seen.get(t, 0) >= count for t in ("created", "running", "deleted"))
                results[-1].extra = {"history": seen, "history_complete_after_s": round(lag, 1), "complete": complete}
            # Waited for: the namespace controller then deletes the phase's Events (48,000 at 30,000
            # pods), work the next phase had paid for and settle() cannot see (few requests, much etcd).
            gone = time.monotonic()
            cluster.kubectl(settings, "delete", "namespace", ns, "--timeout=1800s")
            print(f"  [{mode}] namespace {ns} gone after {time.monotonic() - gone:.0f} s")
        finally:
            delete_nodes(settings, pool)
        show(results[-2], mode)
        show(results[-1], mode)
    for count in node_counts:
        prefix = f"bn{uuid.uuid4().hex[:4]}"
        with sampled() as usage:
            seconds = bench_nodes(settings, prefix, count, 110)
        delete_nodes(settings, prefix)
        results.append(Result("nodes Ready", count, seconds, usage))
        show(results[-1], mode)
    return results


def as_figures(result: Result) -> dict[str, Any]:
    """One phase as the result file keeps it (request counts keyed "VERB resource")."""
    return {"what": result.what, "count": result.count, "seconds": round(result.seconds, 2),
            "rate": round(result.rate, 2), "cpu_seconds": {r: round(c, 2) for r, c in sorted(result.usage.cpu.items())},
            "peak_rss_bytes": dict(sorted(result.usage.peak_rss.items())),
            "apiserver_requests": {f"{verb} {resource or '-'}": round(n) for (verb, resource), n
                                   in sorted(result.requests.items(), key=lambda kv: -kv[1])},
            "extra": result.extra}


def delta(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}


def at_rest(seconds: float) -> Usage:
    with sampled() as usage:
        time.sleep(seconds)
    return usage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", default="1000,10000", help="comma-separated pod counts")
    parser.add_argument("--nodes", default="1000,5000", help="comma-separated node counts ('' for none)")
    # The simulator first by default: started after a raw run, its operator first lists what that run
    # left behind (little, since each phase's namespace is waited out; --rounds alternates anyway).
    parser.add_argument("--modes", default="full,raw")
    parser.add_argument("--warm-up", type=int, default=1000,
                        help="pods created and deleted by the cluster alone before the measured runs, not "
                             "counted: whichever mode ran first paid for the control plane's warm-up (0: none)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the modes this many times, every other round in the reverse order")
    parser.add_argument("--per-deployment", type=int, default=100,
                        help="pods per Deployment (one Deployment of 10,000 replicas is quadratic in the "
                             "ReplicaSet controller and the scheduler's topology spreading)")
    parser.add_argument("--py-spy", type=Path, default=None, help="write sampled stacks here (full mode)")
    parser.add_argument("--pprof", type=Path, default=None,
                        help=f"write the control plane's CPU profiles of each phase's first {PPROF_SECONDS} s here")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # progress while redirected
    pod_counts = [int(x) for x in args.pods.split(",") if x]
    node_counts = [int(x) for x in args.nodes.split(",") if x]
    settings = ClusterSettings()
    started = dt.datetime.now(dt.UTC)
    running = {role for role in processes().values() if role in PYTHON_ROLES}
    if running:
        print(f"stop the simulator's own processes first ({', '.join(sorted(running))}): `make up`, not `make run`",
              file=sys.stderr)
        return 2
    services.up(settings)  # the store is read before the first run, and full runs need it
    cluster.up(settings)
    print(f"watches open before: {watches(settings):.0f}; in the store: {store_load(settings)}")
    if args.warm_up:
        print("warm-up (not counted):")
        measure(settings, "warm-up", [args.warm_up], [], None, args.per_deployment)
    order = args.modes.split(",")
    # Every other round in the reverse order (full, raw, raw, full, ...): the cluster's drift over
    # the run and whichever mode goes first then weigh on both modes alike.
    results: dict[str, list[list[Result]]] = {}
    runs: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    for turn in range(args.rounds):
        for mode in order if turn % 2 == 0 else order[::-1]:
            print(f"{mode}{f' (round {turn + 1})' if args.rounds > 1 else ''}:")
            if mode == "full":
                with simulator(settings, "operator", "api", "engine"):
                    time.sleep(10)  # the operator's initial lists and the engine's first ticks
                    print(f"  watches open: {watches(settings):.0f}")
                    found = measure(settings, mode, pod_counts, node_counts, args.py_spy, args.per_deployment,
                                    args.pprof)
            else:
                found = measure(settings, mode, pod_counts, node_counts, None, args.per_deployment, args.pprof)
            results.setdefault(mode, []).append(found)
            runs.append({"mode": mode, "round": turn + 1, "phases": [as_figures(r) for r in found]})
    if {"raw", "full"} <= results.keys():
        print("full / raw throughput:")
        for turn, (raws, fulls) in enumerate(zip(results["raw"], results["full"], strict=True)):
            for raw, full in zip(raws, fulls, strict=True):
                print(f"  {f'round {turn + 1}: ' if args.rounds > 1 else ''}{raw.what} {raw.count}: "
                      f"raw {raw.rate:.1f}/s, full {full.rate:.1f}/s, ratio {full.rate / raw.rate:.2f}")
                ratios.append({"round": turn + 1, "what": raw.what, "count": raw.count, "raw_rate": round(raw.rate, 2),
                               "full_rate": round(full.rate, 2), "ratio": round(full.rate / raw.rate, 3)})
        if args.rounds > 1:  # over all rounds: every round's pods over every round's seconds
            for phase, raws in enumerate(zip(*results["raw"], strict=True)):
                fulls = [r[phase] for r in results["full"]]
                raw_rate = sum(r.count for r in raws) / sum(r.seconds for r in raws)
                full_rate = sum(r.count for r in fulls) / sum(r.seconds for r in fulls)
                print(f"  all rounds: {raws[0].what} {raws[0].count}: raw {raw_rate:.1f}/s, full {full_rate:.1f}/s, "
                      f"ratio {full_rate / raw_rate:.2f}")
                ratios.append({"round": "all", "what": raws[0].what, "count": raws[0].count,
                               "raw_rate": round(raw_rate, 2), "full_rate": round(full_rate, 2),
                               "ratio": round(full_rate / raw_rate, 3)})
    write_results("bench_scale", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                  {"runs": runs, "ratios": ratios}, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
