SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/.tide/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export GOFLAGS := -buildvcs=false
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: all venv deps tools cluster-up cluster-down test lint types unit e2e bench soak crds demo demo-down clean

all: venv tools

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

deps:
	tools/install-deps.sh

tools: deps
	tools/build.sh all

cluster-up: venv tools
	$(PY) -m e2e.cluster up

cluster-down: venv
	$(PY) -m e2e.cluster down

crds: venv
	$(PY) -m tide.shared.api.crdgen

lint: venv
	$(PY) -m ruff check .

# The folders install as `tide.shared`, `tide.controllers`, `tide.cli` (setup.py's package_dir), a
# mapping mypy cannot follow: it reads them through a view of links under the `tide` namespace.
types: venv
	@mkdir -p .tide/typecheck/tide
	@for d in shared controllers cli; do ln -sfn ../../../$$d .tide/typecheck/tide/$$d; done
	MYPYPATH=.tide/typecheck $(PY) -m mypy --strict --explicit-package-bases \
		-p tide.shared -p tide.controllers -p tide.cli

unit: venv
	$(PYTEST) tests -q

e2e: venv tools
	$(PYTEST) e2e -q

# One pytest run for unit and e2e tests, spread over TEST_WORKERS processes by test file; each
# worker starts a control plane of its own (e2e tests mostly wait on controllers and the plane).
TEST_WORKERS ?= 2
test: venv tools lint types
	$(PYTEST) tests e2e -q -rfEs --durations=15 -n $(TEST_WORKERS) --dist loadfile

# Flux's own controllers are built only here: the side-by-side rows run them (bench/bench_flux.py).
bench: venv tools
	tools/build.sh flux-controllers
	$(PY) -m bench

# Not part of `make test`: 1000 Kustomizations, a Git change a minute, 30 minutes; exits 1 on a leak or
# reconcile errors (bench/soak.py). Shorter: make soak SOAK_ARGS="--kustomizations 100 --duration 5m"
soak: venv tools
	$(PY) -m bench.soak $(SOAK_ARGS)

demo: venv tools
	$(PY) -m demo up

demo-down: venv
	$(PY) -m demo down

clean: cluster-down
	rm -rf .tide $(VENV)
