"""A normal (not editable) install, as the image makes, carries everything the processes read: the
cluster's data and the migrations inside the k8sim package, and the ``k8sim`` console script.

The wheel is built from a copy of the sources and installed into a fresh venv; the dependencies
come from this test's own environment, so nothing but the build backend is fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from k8sim import scenarios, store, topology
from k8sim.settings import CLUSTER_DATA, ROOT, NodeSettings

pytestmark = pytest.mark.integration

SOURCES = ("pyproject.toml", "README.md", "k8sim", "api", "operator", "engine")

#: What the installed package reads, printed as JSON by the venv's Python from outside the checkout.
PROBE = """
import json, k8sim, k8sim.settings, k8sim.store, k8sim.topology as t, k8sim.scenarios as s
from k8sim_api.core.config import ApiSettings
from k8sim_operator.settings import OperatorSettings
operator = OperatorSettings()
print(json.dumps({
    "package": k8sim.__file__,
    "stages": {p: t.stages_for_profile(p) for p in ("demo", "realistic")},
    "pools": t.load_pools(k8sim.settings.NodeSettings().nodepools),
    "background": str(s.background("realistic")),
    "crds": sorted(p.name for p in ApiSettings().crds.glob("*.yaml")),
    "operator": [operator.storage_classes.is_file(), operator.scenario_crd.is_file()],
    "migrations": [[v, n] for v, n, _ in k8sim.store.migrations()],
}))
"""


@dataclass
class Installed:
    wheel: Path
    bin: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / cmd[0]), *cmd[1:]], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("packaging")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"),
                            str(src)], capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("k8s_simulator-*.whl")
    venv.create(work / "venv", with_pip=False)
    python = work / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # A plain path entry after the venv's own packages: the dependencies are found, but this
    # environment's editable install of the checkout (a finder its own .pth starts) is not.
    Path(purelib, "zz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("K8SIM_") and k != "PYTHONPATH"}
    away = work / "elsewhere"
    away.mkdir()
    return Installed(wheel, python.parent, away, env)


def test_the_wheel_carries_the_cluster_data_and_the_migrations(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    shipped = {f"k8sim/cluster/{p.relative_to(CLUSTER_DATA)}" for p in CLUSTER_DATA.rglob("*.yaml")}
    assert len(shipped) >= 20
    assert {n for n in names if n.startswith("k8sim/cluster/")} == shipped
    migrations = {f"k8sim/migrations/{p.name}" for p in (ROOT / "k8sim" / "migrations").glob("*.sql")}
    assert len(migrations) == len(store.migrations())
    assert {n for n in names if n.endswith(".sql")} == migrations
    assert "k8sim/py.typed" in names


def test_the_installed_package_reads_the_same_data_from_its_own_folder(installed: Installed) -> None:
    probe = installed.run("python", "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    found: dict[str, Any] = json.loads(probe.stdout)
    assert Path(found["package"]).is_relative_to(installed.bin.parent)
    assert not Path(found["package"]).is_relative_to(ROOT)
    assert found["stages"] == {p: topology.stages_for_profile(p) for p in ("demo", "realistic")}
    assert found["pools"] == topology.load_pools(NodeSettings().nodepools)
    assert found["crds"] == sorted(p.name for p in (CLUSTER_DATA / "crds").glob("*.yaml"))
    assert found["operator"] == [True, True]
    assert found["migrations"] == [[v, n] for v, n, _ in store.migrations()]
    assert found["background"] == str(scenarios.background("realistic"))


def test_the_console_script_and_the_charts_jobs_run_from_the_install(installed: Installed) -> None:
    help_ = installed.run("k8sim", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "cluster-up" in help_.stdout and "services-down" in help_.stdout
    wrong = installed.run("k8sim", "no-such-command")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
    kwok = installed.run("python", "-m", "k8sim.jobs", "kwok-config", "demo")
    assert kwok.returncode == 0, kwok.stderr
    assert kwok.stdout == topology.kwok_config("demo")
    unknown = installed.run("python", "-m", "k8sim.jobs", "kwok-config", "turbo")
    assert unknown.returncode == 1 and "unknown profile 'turbo'" in unknown.stderr
