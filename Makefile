# One-command set-up. `make up` runs the product locally; `make test` runs every test
# against a real Kafka broker and Redis that it starts (and stops) itself.
# With Docker instead: `docker compose up --build` (compose.yaml).

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Tests get their own services, ports and state, so they never touch a running `make up`.
TEST_KAFKA_PORT ?= 19092
TEST_KAFKA_CONTROLLER_PORT ?= 19093
TEST_REDIS_PORT ?= 16379
TEST_STATE_DIR ?= .run/test
TEST_ENV = PIPELINE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_KAFKA_PORT) \
	PIPELINE_KAFKA_CONTROLLER_PORT=$(TEST_KAFKA_CONTROLLER_PORT) \
	PIPELINE_REDIS_URL=redis://127.0.0.1:$(TEST_REDIS_PORT)/0 \
	PIPELINE_STATE_DIR=$(TEST_STATE_DIR)
PYTEST_ARGS ?=
# e.g. AUDIT_ARGS=--require-service in CI with network; --ignore-vuln ID (with a reason) for an accepted risk.
AUDIT_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup tools up up-detached up-monitoring down logs status test test-unit lint audit format clean bench soak

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=78.1.1'  # the venv's bundled setuptools has known CVEs
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) tools ## Create .venv and install the project with its dev tools

# Debian packages the tests need: promtool (prometheus) checks the Prometheus config and
# `make up-monitoring` runs its Prometheus; chromium + chromium-driver drive the browser test;
# redis-server runs Redis. Installed with apt when missing and running as root.
APT_TOOLS = promtool:prometheus chromium:chromium chromedriver:chromium-driver redis-server:redis-server
tools:
	@missing=""; for pair in $(APT_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing (make test needs them): apt-get install$$missing"; \
	  fi; \
	fi

up: setup ## Run everything in the foreground: Kafka, Redis, topics, producers, dataflow, dashboard (Ctrl-C stops)
	$(PY) -m infra.stack up

up-detached: setup ## The same in the background (make logs, make down)
	$(PY) -m infra.stack up --detach

up-monitoring: setup ## make up plus a local Prometheus on :9090 (Grafana too: docker compose --profile monitoring up)
	$(PY) -m infra.stack up --monitoring

down: setup ## Stop everything make up / up-detached started, Kafka and Redis included
	$(PY) -m infra.stack down

logs: setup ## Follow the output of make up-detached
	$(PY) -m infra.stack logs

status: setup ## Show which local services run
	$(PY) -m infra.local status

test: setup ## Run the whole suite against a real Kafka and Redis (started and stopped here)
	$(TEST_ENV) $(PY) -m infra.local exec -- $(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## Run the unit tests only (no services)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Benchmarks get their own Kafka/Redis ports and state too (started if not running, stopped after).
BENCH_KAFKA_PORT ?= 29092
BENCH_KAFKA_CONTROLLER_PORT ?= 29093
BENCH_REDIS_PORT ?= 26379
BENCH_STATE_DIR ?= .run/bench
FULL ?=
BENCH_ARGS ?=

bench: setup ## Run the benchmarks (quick ~2 min; FULL=1: large sizes, ~25 min), write bench/results/latest.*
	$(PY) -m bench.run $(if $(FULL),--full) --kafka-port $(BENCH_KAFKA_PORT) \
		--kafka-controller-port $(BENCH_KAFKA_CONTROLLER_PORT) --redis-port $(BENCH_REDIS_PORT) \
		--state-dir $(BENCH_STATE_DIR) $(BENCH_ARGS)

# The soak gets its own Kafka/Redis/process ports and state too (Kafka reused if it answers, Redis its own).
SOAK_KAFKA_PORT ?= 39092
SOAK_KAFKA_CONTROLLER_PORT ?= 39093
SOAK_REDIS_PORT ?= 36379
SOAK_DASH_PORT ?= 38050
SOAK_METRICS_PORTS ?= 39100 39101 39102
SOAK_STATE_DIR ?= .run/soak
DURATION ?= 30m
SOAK_ARGS ?=

soak: setup ## Whole stack at a steady rate with faults for DURATION (30m), then count; bench/results/soak-latest.*
	PIPELINE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(SOAK_KAFKA_PORT) \
	PIPELINE_KAFKA_CONTROLLER_PORT=$(SOAK_KAFKA_CONTROLLER_PORT) \
	PIPELINE_REDIS_URL=redis://127.0.0.1:$(SOAK_REDIS_PORT)/0 \
	PIPELINE_DASH_PORT=$(SOAK_DASH_PORT) \
	PIPELINE_FLOW_METRICS_PORT=$(word 1,$(SOAK_METRICS_PORTS)) \
	PIPELINE_PRODUCER_METRICS_PORT=$(word 2,$(SOAK_METRICS_PORTS)) \
	PIPELINE_ACTIVITY_PRODUCER_METRICS_PORT=$(word 3,$(SOAK_METRICS_PORTS)) \
	PIPELINE_STATE_DIR=$(SOAK_STATE_DIR) \
	$(PY) -m bench.soak --duration $(DURATION) $(SOAK_ARGS)

lint: setup ## ruff, mypy and the vulnerability audit
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m infra.audit $(AUDIT_ARGS)

audit: setup ## Check installed packages for known vulnerabilities (pip-audit; says so when offline)
	$(PY) -m infra.audit $(AUDIT_ARGS)

format: setup ## Apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean: ## Stop services, remove the environment and all local state
	-test -x $(PY) && $(PY) -m infra.stack down
	-test -x $(PY) && $(TEST_ENV) $(PY) -m infra.local stop
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache *.egg-info
