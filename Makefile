# Every target works on a fresh Debian 12 machine; settings come from K8SIM_* variables
# (see k8sim/settings.py). `make run` sets up and starts the simulator; `make test` tests it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
K8SIM := $(PY) -m k8sim

.PHONY: setup deps venv run up down test unit stages-test bench bench-scale lint docs cluster-up cluster-down cluster-delete \
        services-up services-down status clean

deps:  ## Debian packages the simulator needs (idempotent; needs root or sudo)
	@bash scripts/install-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

setup: deps venv  ## packages, Python env, the control-plane and Karpenter builds (cached)
	$(K8SIM) setup

run: setup  ## set everything up and start the simulator (API, operator) in the foreground
	$(K8SIM) run

up: venv
	$(K8SIM) up

down: venv
	$(K8SIM) down

status: venv
	@$(K8SIM) status

cluster-up: venv
	$(K8SIM) cluster-up

cluster-down: venv
	$(K8SIM) cluster-down

cluster-delete: venv
	$(K8SIM) cluster-delete

services-up: venv
	$(K8SIM) services-up

services-down: venv
	$(K8SIM) services-down

test: venv stages-test  ## the whole suite; starts the services and cluster it needs
	$(K8SIM) up
	$(VENV)/bin/pytest

unit: venv stages-test
	$(VENV)/bin/pytest tests/unit

# The KWOK stages' golden tests (tests/golden/): Go, with the flags of the control-plane build so that
# its compiled packages come from Go's build cache (it has downloaded the modules, too). -count=1:
# Go's test cache does not watch files outside controlplane/, where the stages and golden files are.
GO ?= $(or $(K8SIM_GO),go)
stages-test:
	cd controlplane && CGO_ENABLED=0 $(GO) test -count=1 -trimpath ./stages/...

bench: venv  ## every benchmark (prints ratios against a baseline run in the same process)
	$(K8SIM) up
	$(PY) bench/bench_cluster.py
	$(PY) bench/bench_operator.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_sla.py
	$(PY) bench/bench_api.py
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_tick.py
	$(PY) bench/bench_adapter.py
	$(PY) bench/bench_metrics.py

bench-scale: venv  ## raw cluster vs the whole simulator at 1,000 and 10,000 pods, twice (about an hour)
	$(K8SIM) up
	$(PY) bench/bench_scale.py --rounds 2 $(BENCH_SCALE_ARGS)

# Never `mkdocs build --quiet`: it hides the warnings --strict turns into a failure.
docs: venv  ## the documentation site in site/: generated pages, then a strict build (broken links fail it)
	$(PY) scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	$(PY) scripts/gen_docs.py --check-offline site

lint: venv  ## ruff, mypy (strict for the library) and the import contracts of pyproject.toml
	$(VENV)/bin/ruff check k8sim api operator engine tests bench scripts
	$(VENV)/bin/mypy k8sim api/k8sim_api operator/k8sim_operator engine/k8sim_engine
	$(VENV)/bin/lint-imports

clean: down
	rm -rf .state
