"""The engine's tick at thousands of pods: CPU per tick with Python's default garbage-collector
thresholds (the baseline) against the engine's own (``K8SIM_GC_THRESHOLD``, :func:`k8sim.settings.tune_gc`).

The pods are held as the engine's watch cache holds them: decoded from watch lines (orjson), shaped
as KWOK leaves a Running pod of a Deployment, without managedFields. Each tick runs what
``Engine.tick`` does between reading the cache and writing to the stores: the model's inputs, the
model's step, the metrics APIs' usage, the cluster alerts and the health document. ``--churn``
replaces that share of the pods each tick with new versions, as watch events would.
Rounds alternate the two settings over the same heap.

    python bench/bench_tick.py [--pods 30000] [--ticks 12] [--rounds 2] [--churn 0.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from k8sim_engine.cache import _slim
from k8sim_engine.metrics_api import usage_from
from k8sim_engine.sources import Memo, pod_specs, service_labels, workload_replicas

from k8sim import alerts, contract, model
from k8sim.settings import CommonSettings, tune_gc

#: A Running pod of a Deployment as KWOK leaves it (read from the local cluster, managedFields dropped).
POD = orjson.loads("".join([
    '{"apiVersion":"v1","kind":"Pod","metadata":{"creationTimestamp":"2026-11-28T18:05:11Z","generateName":"gcpro',
    'be-9cf98cdfc-","generation":1,"labels":{"app":"load-0","pod-template-hash":"9cf98cdfc"},"name":"gcprobe-9cf9',
    '8cdfc-2656x","namespace":"bench","ownerReferences":[{"apiVersion":"apps/v1","blockOwnerDeletion":true,"contr',
    'oller":true,"kind":"ReplicaSet","name":"gcprobe-9cf98cdfc","uid":"4081aa9f-0ad8-4e6e-9c99-16586aecc7e3"}],"r',
    'esourceVersion":"2901183","uid":"5e9ab77e-2570-4a33-9008-fa42923815ea"},"spec":{"containers":[{"image":"ngin',
    'x:1","imagePullPolicy":"IfNotPresent","name":"nginx","resources":{"requests":{"cpu":"10m","memory":"16Mi"}},',
    '"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","volumeMounts":[{"mountPat',
    'h":"/var/run/secrets/kubernetes.io/serviceaccount","name":"kube-api-access-5tp7k","readOnly":true}]}],"dnsPo',
    'licy":"ClusterFirst","enableServiceLinks":true,"nodeName":"cpu-4","preemptionPolicy":"PreemptLowerPriority",',
    '"priority":0,"restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"serviceAccou',
    'nt":"default","serviceAccountName":"default","terminationGracePeriodSeconds":30,"tolerations":[{"effect":"No',
    'Execute","key":"node.kubernetes.io/not-ready","operator":"Exists","tolerationSeconds":20},{"effect":"NoExecu',
    'te","key":"node.kubernetes.io/unreachable","operator":"Exists","tolerationSeconds":20}],"volumes":[{"name":"',
    'kube-api-access-5tp7k","projected":{"defaultMode":420,"sources":[{"serviceAccountToken":{"expirationSeconds"',
    ':3607,"path":"token"}},{"configMap":{"items":[{"key":"ca.crt","path":"ca.crt"}],"name":"kube-root-ca.crt"}},',
    '{"downwardAPI":{"items":[{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"},"path":"namespace"',
    '}]}}]}}]},"status":{"conditions":[{"lastProbeTime":null,"lastTransitionTime":"2026-11-28T18:05:12Z","status"',
    ':"True","type":"Initialized"},{"lastProbeTime":null,"lastTransitionTime":"2026-11-28T18:05:12Z","status":"Tr',
    'ue","type":"Ready"},{"lastProbeTime":null,"lastTransitionTime":"2026-11-28T18:05:12Z","status":"True","type"',
    ':"ContainersReady"},{"lastProbeTime":null,"lastTransitionTime":"2026-11-28T18:05:11Z","status":"True","type"',
    ':"PodScheduled"}],"containerStatuses":[{"image":"nginx:1","imageID":"","lastState":{},"name":"nginx","ready"',
    ':true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"2026-11-28T18:05:12Z"}}}],"hostIP":"1',
    '0.240.0.14","phase":"Running","podIP":"10.0.0.91","podIPs":[{"ip":"10.0.0.91"}],"qosClass":"BestEffort","sta',
    'rtTime":"2026-11-28T18:05:12Z"}}',]))
PER_DEPLOYMENT = 100
PODS_PER_NODE = 100
START = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)


def watch_line(index: int, version: int) -> bytes:
    """The watch event of the index-th pod at a resourceVersion."""
    deployment = index // PER_DEPLOYMENT
    pod: dict[str, Any] = orjson.loads(orjson.dumps(POD))
    meta = pod["metadata"]
    meta.update(name=f"load-{deployment}-9cf98cdfc-{index}", uid=f"00000000-0000-4000-8000-{index:012d}",
                resourceVersion=str(version))
    meta["labels"]["app"] = f"load-{deployment}"
    meta["ownerReferences"][0]["name"] = f"load-{deployment}-9cf98cdfc"
    pod["spec"]["nodeName"] = f"bench-{index // PODS_PER_NODE}"
    return orjson.dumps({"type": "MODIFIED", "object": pod})


class Tick:
    """The engine's per-tick work over a watch cache of ``pods`` pods."""

    def __init__(self, pods: int):
        self.count = pods
        self.cache: dict[str, dict[str, Any]] = {}
        self.version = 0
        for index in range(pods):
            self.event(index)
        self.nodes = [{"metadata": {"name": f"bench-{n}", "labels": {}},
                       "status": {"capacity": {"cpu": "16", "memory": "64Gi"},
                                  "conditions": [{"type": "Ready", "status": "True"}]}}
                      for n in range(-(-pods // PODS_PER_NODE))]
        self.deployments = [{"metadata": {"name": f"load-{d}", "namespace": "bench"}, "spec": {"replicas": 100},
                             "status": {"availableReplicas": 100}} for d in range(-(-pods // PER_DEPLOYMENT))]
        self.model = model.Model(1)
        self.specs, self.containers, self.services = Memo(), Memo(), Memo()
        self.ticks = 0
        self.usage: Any = None

    def event(self, index: int) -> None:
        self.version += 1
        obj = orjson.loads(watch_line(index, self.version))["object"]
        self.cache[obj["metadata"]["uid"]] = _slim(obj)

    def __call__(self, churn: float) -> None:
        for index in range(self.ticks * 7919, self.ticks * 7919 + int(churn * self.count)):
            self.event(index % self.count)
        self.ticks += 1
        now = START + dt.timedelta(seconds=5 * self.ticks)
        pods = list(self.cache.values())
        specs = pod_specs(pods, self.nodes, {}, self.specs)
        labels = service_labels(pods, self.services)
        samples = self.model.tick(specs, now, 5.0, labels, workload_replicas(self.deployments), {}, {}, now)
        self.usage = usage_from(pods, self.nodes, self.model, samples, now, 5.0, self.containers)
        live = {p["metadata"]["uid"] for p in pods}
        for memo in (self.specs, self.containers, self.services):
            memo.keep(live)
        contract.health_document(samples, now, None, {})
        alerts.cluster_alerts(pods, self.nodes, {}, now)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=30000)
    parser.add_argument("--ticks", type=int, default=12, help="ticks per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each setting, alternating")
    parser.add_argument("--churn", type=float, default=0.0, help="share of the pods changed before each tick")
    args = parser.parse_args()
    default = gc.get_threshold()
    settings = CommonSettings()
    started = time.monotonic()
    tick = Tick(args.pods)
    print(f"{args.pods} pods cached in {time.monotonic() - started:.1f} s", flush=True)
    tick(args.churn)  # the model's first sight of every pod is not a steady tick
    # (name, tuned GC, the metrics APIs read every pod and node each tick, as HPAs on every pod would)
    cases = [("Python's default GC", False, False), (f"K8SIM_GC_THRESHOLD={settings.gc_threshold}", True, False),
             ("the same, metrics APIs read every tick", True, True)]
    spent = dict.fromkeys((name for name, _, _ in cases), 0.0)
    for _ in range(args.rounds):
        for name, tuned, read in cases:
            gc.set_threshold(*default)
            if tuned:
                tune_gc(settings)
            began = time.process_time()
            for _ in range(args.ticks):
                tick(args.churn)
                if read:
                    len(tick.usage.pods) + len(tick.usage.nodes)
            spent[name] += time.process_time() - began
            print(f"  {name}: {(time.process_time() - began) / args.ticks * 1000:.0f} ms a tick", flush=True)
    gc.set_threshold(*default)
    per_tick = {name: seconds / (args.ticks * args.rounds) for name, seconds in spent.items()}
    base = cases[0][0]
    print(f"engine tick at {args.pods} pods (churn {args.churn:.0%}), CPU per tick (at a 5 s tick, share of a core):")
    for name, seconds in per_tick.items():
        print(f"  {name}: {seconds * 1000:.0f} ms ({seconds / 5:.1%}), ratio {seconds / per_tick[base]:.2f} "
              f"against {base}")
    return 0


if __name__ == "__main__":
    from common import run_recorded

    raise SystemExit(run_recorded("bench_tick", main))
