"""The KWOK stages each delay profile deploys, as reviewed golden files.

``stages_for_profile`` patches the shipped stages with a profile's delays (and drops a shortcut's
stage to weight 0). Its result for every profile is committed in ``tests/golden/profiles/<profile>.yaml``,
so that any change to the stages or to how profiles patch them shows as a diff of those files.
``K8SIM_UPDATE_GOLDEN=1`` rewrites them. The Go test in ``controlplane/stages`` loads the same files
with KWOK's own loader and checks which stage a pod gets under each profile.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8sim import topology

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "profiles"
PROFILES = sorted(yaml.safe_load(topology.PROFILES.read_text()))


class _Dumper(yaml.SafeDumper):
    """Block style for templates, so that a golden diff reads as a diff of the template's lines."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(stages: list[dict[str, Any]]) -> str:
    header = "# Written by tests/unit/test_stage_golden.py (K8SIM_UPDATE_GOLDEN=1): stages_for_profile's result.\n"
    return header + yaml.dump_all(stages, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_stages_match_golden(profile: str) -> None:
    stages = topology.stages_for_profile(profile)
    path = GOLDEN / f"{profile}.yaml"
    text = _dump(stages)
    if os.environ.get("K8SIM_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; K8SIM_UPDATE_GOLDEN=1 writes it"
    golden = list(yaml.safe_load_all(path.read_text()))
    if golden != stages:
        diff = "".join(
            difflib.unified_diff(
                path.read_text().splitlines(True), text.splitlines(True), str(path), f"stages_for_profile({profile!r})"
            )
        )
        pytest.fail(f"{profile}'s stages differ from {path} (K8SIM_UPDATE_GOLDEN=1 rewrites it):\n{diff}")


def test_golden_round_trips_exactly() -> None:
    # Block-style templates must load back to the same strings, trailing newlines included, or
    # the golden files would not show what KWOK gets.
    for profile in PROFILES:
        stages = topology.stages_for_profile(profile)
        assert list(yaml.safe_load_all(_dump(stages))) == stages


def test_no_golden_for_a_removed_profile() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == PROFILES


def test_demo_replaces_pod_create_with_pod_start() -> None:
    # The one structural difference between the profiles, stated here so a golden rewrite that
    # loses it is caught even if the diff is approved.
    demo = {s["metadata"]["name"]: s for s in topology.stages_for_profile("demo")}
    realistic = {s["metadata"]["name"]: s for s in topology.stages_for_profile("realistic")}
    assert demo["pod-create"]["spec"]["weight"] == 0
    assert demo["pod-start"]["spec"]["delay"]["durationMilliseconds"] == 300
    assert "pod-start" not in realistic
    assert realistic["pod-create"]["spec"]["weight"] == 1
    assert set(demo) - set(realistic) == {"pod-start"}
