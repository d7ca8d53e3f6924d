"""The registrar's decisions about the engine's APIServices: re-create ours when deleted, leave another
engine's alone, name a foreign backend, and take a group back as the takeover setting says. The
cluster is a fake here (pure logic); tests/integration/test_metrics_api_healing.py runs it for real."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest
from k8sim_engine import registration
from k8sim_engine.registration import Registrar, decide
from k8sim_engine.settings import EngineSettings, Takeover

from k8sim.kube import Kube, KubeError

METRICS = "v1beta1.metrics.k8s.io"


def foreign(status: str | None = "False", uid: str = "u1", reason: str = "ServiceNotFound") -> dict[str, Any]:
    """kube-prometheus' prometheus-adapter APIService as the apiserver returns it."""
    obj: dict[str, Any] = {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": METRICS, "uid": uid, "resourceVersion": "7"},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                 "service": {"name": "prometheus-adapter", "namespace": "monitoring"}}}
    if status is not None:
        obj["status"] = {"conditions": [{"type": "Available", "status": status, "reason": reason,
                                         "message": 'service/prometheus-adapter in "monitoring" is not present'}]}
    return obj


def ours(port: int = 6382, reason: str = "Passed", name: str = METRICS) -> dict[str, Any]:
    obj = next(o for o in registration.objects("127.0.0.1", port) if o["metadata"]["name"] == name)
    return {**obj, "metadata": {**obj["metadata"], "uid": "ours", "resourceVersion": "9"},
            "status": {"conditions": [{"type": "Available", "status": "False" if reason != "Passed" else "True",
                                       "reason": reason}]}}


def test_ours_missing_is_created_and_ours_is_left_alone() -> None:
    assert decide(None, None, policy=Takeover.NEVER, grace=30, now=0) == ("create", None)
    assert decide(ours(), None, policy=Takeover.ALWAYS, grace=30, now=0) == ("", None)
    # another engine of the simulator registered it (its port): the last started serves, no fight
    assert decide(ours(port=40000), None, policy=Takeover.ALWAYS, grace=30, now=0) == ("", None)
    assert decide(ours(port=40000), None, policy=Takeover.NEVER, grace=30, now=0, startup=True) == ("claim", None)
    assert decide(ours(reason="ServiceNotFound"), None, policy=Takeover.NEVER, grace=30, now=0) == ("service", None)


def test_a_foreign_backend_is_named_and_taken_back_only_after_the_grace_period() -> None:
    action, seen = decide(foreign(), None, policy=Takeover.UNAVAILABLE, grace=30, now=100)
    assert action == "" and seen is not None
    assert (seen.service, seen.available, seen.reason, seen.unavailable_since) == \
        ("monitoring/prometheus-adapter", "False", "ServiceNotFound", 100)
    action, later = decide(foreign(), seen, policy=Takeover.UNAVAILABLE, grace=30, now=129.9)
    assert action == "" and later is not None and later.unavailable_since == 100
    action, due = decide(foreign(), later, policy=Takeover.UNAVAILABLE, grace=30, now=130)
    assert action == "take" and due is not None and due.view(130)["unavailable_seconds"] == 30


def test_an_available_or_unjudged_foreign_backend_keeps_its_group() -> None:
    for status in ("True", "Unknown", None):
        action, seen = decide(foreign(status), None, policy=Takeover.UNAVAILABLE, grace=0, now=0)
        assert action == "" and seen is not None and seen.unavailable_since is None


def test_recovering_or_being_replaced_restarts_the_grace_period() -> None:
    _, seen = decide(foreign(), None, policy=Takeover.UNAVAILABLE, grace=30, now=0)
    _, back = decide(foreign("True"), seen, policy=Takeover.UNAVAILABLE, grace=30, now=10)
    action, again = decide(foreign(), back, policy=Takeover.UNAVAILABLE, grace=30, now=35)
    assert action == "" and again is not None and again.unavailable_since == 35
    action, other = decide(foreign(uid="u2"), seen, policy=Takeover.UNAVAILABLE, grace=30, now=35)
    assert action == "" and other is not None and other.unavailable_since == 35, "a new object, a new count"


def test_never_and_always() -> None:
    assert decide(foreign(), None, policy=Takeover.NEVER, grace=0, now=1e9)[0] == ""
    assert decide(foreign("True"), None, policy=Takeover.ALWAYS, grace=1e9, now=0)[0] == "take"


class FakeKube:
    """APIServices and Services by name; DELETE honours the uid and resourceVersion preconditions."""

    def __init__(self, *objects: dict[str, Any]):
        self.objects = {o["metadata"]["name"]: o for o in objects}
        self.applied: list[str] = []
        self.deleted: list[str] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return self.objects.get(name)

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        self.applied.append(name)
        if obj["kind"] == "APIService":
            self.objects[name] = {**obj, "metadata": {**obj["metadata"], "uid": "ours", "resourceVersion": "9"}}
        return dict(obj)

    async def resource(self, api_version: str, kind: str) -> Any:
        return type("Info", (), {"path": lambda self, ns, name: f"/apis/apiregistration.k8s.io/v1/apiservices/{name}"
                                 })()

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        name = path.rsplit("/", 1)[1]
        current = self.objects.get(name)
        if current is None:
            raise KubeError(404, "NotFound", "gone")
        if any(current["metadata"].get(k) != v for k, v in body["preconditions"].items()):
            raise KubeError(409, "Conflict", "precondition failed")
        self.deleted.append(name)
        del self.objects[name]
        return {}

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self.deleted.append(name)
        return self.objects.pop(name, None) is not None


def registrar(kube: FakeKube, policy: Takeover, grace: float = 30) -> tuple[Registrar, list[float]]:
    clock = [0.0]
    settings = EngineSettings(metrics_api_takeover=policy, metrics_api_takeover_grace=grace)
    return Registrar(cast(Kube, kube), settings, clock=lambda: clock[0]), clock


def everything_ours() -> list[dict[str, Any]]:
    return [ours(name=n) for n in (METRICS, "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io")]


def test_the_registrar_takes_an_unavailable_backend_back_after_the_grace_and_says_so() -> None:
    kube = FakeKube(foreign(), *everything_ours()[1:])
    reg, clock = registrar(kube, Takeover.UNAVAILABLE, grace=30)
    asyncio.run(reg.reconcile())
    assert kube.applied == [] and reg.view()["foreign"][0]["service"] == "monitoring/prometheus-adapter"
    assert reg.next_check() == pytest.approx(30.05)
    clock[0] = 30
    asyncio.run(reg.reconcile())
    assert kube.deleted == [METRICS] and kube.applied == ["k8sim-metrics", METRICS]
    assert registration.is_ours(kube.objects[METRICS]) and reg.view()["foreign"] == []
    (takeover,) = reg.view()["takeovers"]
    assert (takeover["apiservice"], takeover["from"], takeover["reason"]) == \
        (METRICS, "monitoring/prometheus-adapter", "unavailable")
    assert "ServiceNotFound" in takeover["detail"]


def test_with_never_the_group_stays_foreign_until_its_apiservice_is_deleted() -> None:
    kube = FakeKube(foreign(), *everything_ours()[1:])
    reg, clock = registrar(kube, Takeover.NEVER, grace=0)
    clock[0] = 1e6
    asyncio.run(reg.reconcile())
    assert kube.applied == [] and [f["apiservice"] for f in reg.view()["foreign"]] == [METRICS]
    del kube.objects[METRICS]  # the user deletes kube-prometheus' APIService
    asyncio.run(reg.reconcile())
    assert kube.applied == ["k8sim-metrics", METRICS] and registration.is_ours(kube.objects[METRICS])
    (restored,) = reg.view()["takeovers"]
    assert (restored["from"], restored["reason"]) == ("monitoring/prometheus-adapter", "deleted")


def test_an_apiservice_that_changed_meanwhile_is_not_deleted_blind() -> None:
    kube = FakeKube(foreign(), *everything_ours()[1:])
    reg, _ = registrar(kube, Takeover.ALWAYS)
    real_get = kube.get

    async def stale_read(*args: Any, **kwargs: Any) -> Any:
        found = await real_get(*args, **kwargs)
        if found is not None and found["metadata"]["uid"] == "u1":
            kube.objects[METRICS] = {**found, "metadata": {**found["metadata"], "resourceVersion": "8"}}
        return found
    kube.get = stale_read  # type: ignore[method-assign]
    asyncio.run(reg.reconcile())
    assert kube.deleted == [] and kube.applied == [] and reg.view()["takeovers"] == []


def test_startup_claims_ours_but_not_a_working_foreign_backend() -> None:
    kube = FakeKube(foreign("True"), ours(port=40000, name="v1beta2.custom.metrics.k8s.io"))
    reg, _ = registrar(kube, Takeover.UNAVAILABLE)
    asyncio.run(reg.reconcile(startup=True))
    assert METRICS not in kube.applied
    assert kube.objects["v1beta2.custom.metrics.k8s.io"]["spec"]["service"]["port"] == 6382
    assert "v1beta1.external.metrics.k8s.io" in kube.objects and reg.view()["takeovers"] == [], "start is no takeover"


def test_a_stopping_engine_removes_its_own_apiservices_and_never_the_users() -> None:
    kube = FakeKube(foreign(), *everything_ours()[1:])
    asyncio.run(registration.unregister(cast(Kube, kube)))
    assert METRICS in kube.objects, "prometheus-adapter's APIService is not ours to delete"
    assert set(kube.deleted) == {"v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io", "k8sim-metrics"}
