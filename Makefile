# meshbench: Istio sidecar vs ambient, measured side by side.
# Fresh machine, as root:  make bench   (runs the main job on the local backend)
#                          make test    (runs the tests)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCENARIO ?= quick
RUN := $(PY) -m bench
STAMP := $(VENV)/.setup-stamp
BACKEND ?=
REPETITIONS ?=
RUNS ?= results
# BACKEND=cluster CONTEXT=<kubeconfig context>: the existing cluster to run on
ifdef CONTEXT
export MB_CONTEXT := $(CONTEXT)
endif
, := ,
BENCH_ARGS = $(if $(BACKEND),--backend $(BACKEND)) $(if $(REPETITIONS),--repetitions $(REPETITIONS))

.PHONY: setup host-setup calibrate bench bench-baseline bench-sidecar bench-ambient bench-waypoint bench-scaling bench-fanout \
        report compare trend gate plan doctor teardown test test-unit lint \
        bench-fanout-istiod istiod-build

setup: host-setup $(STAMP) $(VENV)/bin/mb-refclient

# the independent latency reference of `meshbench calibrate` (bench/load/reference.py)
$(VENV)/bin/mb-refclient: bench/load/refclient.c $(STAMP)
	cc -O2 -Wall -pthread -o $@ $< -lm

host-setup:
	@bash scripts/setup-host.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@# Debian's BCC bindings live outside the venv: link just the bcc package in
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  if [ -d /usr/lib/python3/dist-packages/bcc ]; then ln -sfn /usr/lib/python3/dist-packages/bcc $$site/bcc; fi
	@touch $@

bench: setup
	$(RUN) run -s $(SCENARIO) $(BENCH_ARGS)

bench-baseline: setup
	$(RUN) run -s $(SCENARIO) --modes baseline

bench-sidecar: setup
	$(RUN) run -s $(SCENARIO) --modes baseline,sidecar

bench-ambient: setup
	$(RUN) run -s $(SCENARIO) --modes baseline,ambient

bench-waypoint: setup
	$(RUN) run -s $(SCENARIO) --modes baseline,waypoint

bench-scaling: setup
	$(RUN) sweep -s scaling

# the scalability claim: one config change vs mesh size (10-500 pods), then services (10-200)
# harness latency vs the independent reference client, per mode, at 1 and 4 connections
calibrate: setup
	$(RUN) calibrate -s $(SCENARIO) --connections $(or $(CONNECTIONS),1$(,)4) $(BENCH_ARGS)

bench-fanout: setup
	$(RUN) sweep -s fanout
	$(RUN) sweep -s fanout-services

# claims (b) and (c) from a real istiod (built from the Go module proxy on first use, cached
# in ~/.cache/meshbench): 10 to 10,000 simulated pods per mode; SIZES=10,100 for fewer
ISTIOD_SWEEP ?= fanout-istiod
bench-fanout-istiod: setup
	$(RUN) istiod sweep -s $(ISTIOD_SWEEP) $(if $(SIZES),--sizes $(SIZES)) $(if $(COMPAT),--compat $(COMPAT))

istiod-build: $(STAMP)
	$(RUN) istiod build

# RUNS="results/a results/b": the claims from exactly those runs (RUNS' default, results,
# is trend's and means: this run plus the newest compatible run of each mode it lacks)
report: $(STAMP)
	$(RUN) report $(RUN_DIR) $(if $(filter-out results results/,$(RUNS)),--runs $(RUNS))

compare: $(STAMP)
	$(RUN) compare $(RUN_A) $(RUN_B) $(COMPARE_ARGS)

trend: $(STAMP)
	$(RUN) trend $(RUNS) $(TREND_ARGS)

# the nightly gate: RUN_DIR against the history of green nights in RUNS (analysis/gate.py)
gate: $(STAMP)
	$(RUN) gate $(RUN_DIR) $(RUNS) $(GATE_ARGS)

plan: $(STAMP)
	$(RUN) plan -s $(SCENARIO) $(if $(MODE),--mode $(MODE),)

doctor: $(STAMP)
	$(RUN) doctor

teardown: $(STAMP)
	$(RUN) teardown --all

# lint first (ruff + mypy, as CI runs it), then every test; root/BCC tests run when root
test: setup lint
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q -m "not root and not bcc and not slow"

lint: $(STAMP)
	$(PY) -m ruff check bench analysis tests benchmarks workloads/locustfiles
	$(PY) -m mypy bench analysis
