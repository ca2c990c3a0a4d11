# Run `make help` for the list of targets. Every target sets up what it needs first and is safe to repeat.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
UV_VERSION := 0.13.8
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# No telemetry leaves this machine from the tools the pipeline drives.
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Prefect's database and settings stay in the project (git-ignored), not in the home folder.
export PREFECT_HOME := $(CURDIR)/.prefect

.DEFAULT_GOAL := help
.PHONY: help setup setup-gpu dataset chromium postgresql run test lint bench bench-production flow predict serve stop status deployment-run clean-outputs ingest accept-drift history rollback

help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# `make setup-gpu` marks the virtualenv as the GPU build: from then on it is synced from requirements-gpu.lock.
LOCK_FILE = $(if $(wildcard $(VENV)/.gpu),requirements-gpu.lock,requirements.lock)

$(VENV)/.installed: requirements.lock requirements-gpu.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	# Compile bytecode at install: with PYTHONDONTWRITEBYTECODE set, importing TensorFlow would otherwise
	# recompile it from source in every process (about 9 s instead of 4 s on 2 cores).
	$(VENV)/bin/uv pip sync --quiet --compile-bytecode --python $(PYTHON) $(LOCK_FILE)
	touch $@

setup-gpu: ## On Linux with an NVIDIA GPU: TensorFlow's CUDA build in .venv (requirements-gpu.lock); training then uses the GPU
	mkdir -p $(VENV) && touch $(VENV)/.gpu && rm -f $(VENV)/.installed
	$(MAKE) setup
	$(PYTHON) -m tasks.lib.device

setup: $(VENV)/.installed dataset ## Create .venv from requirements.lock and install the Fashion-MNIST files

# $(call apt_install,PACKAGE,MESSAGE): install Debian's PACKAGE as root or with sudo; without either, print MESSAGE.
apt_install = if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	elif command -v sudo >/dev/null; then \
	sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	else echo "$(strip $(2))"; fi

dataset: ## Install Debian's dataset-fashion-mnist (the offline source of Fashion-MNIST) if missing
	@if [ ! -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then $(call apt_install,dataset-fashion-mnist,\
	  Fashion-MNIST is not in $(FASHION_MNIST_DIR); install Debian's dataset-fashion-mnist or let the download \
	  stage use the HTTPS mirrors in params.yaml); fi

chromium: ## Install Debian's chromium (the test that renders the report page uses it headless) if missing
	@if ! command -v chromium >/dev/null; then $(call apt_install,chromium,\
	  chromium is missing: install Debian's chromium package (the report page test needs it)); fi

postgresql: ## Install Debian's postgresql (the served tests start their own server from its binaries) if missing
	@if ! [ -x "$$(pg_config --bindir 2>/dev/null)/initdb" ]; then $(call apt_install,postgresql,\
	  PostgreSQL's binaries are missing: install Debian's postgresql package (the served tests need them)); fi

run: setup ## Run the whole pipeline (dvc repro) on the datasets in params.yaml and say where the outputs are
	@$(PYTHON) -m tasks.check_params  # data/sources/<dataset> -> this machine's local_dir, before DVC looks
	dvc repro
	@$(PYTHON) -m versioning.commits
	@$(PYTHON) -m tools.outputs

flow: setup ## Run the Prefect flow for one dataset without a server: make flow DATASET=mnist-sample
	$(PYTHON) -m flows.training --dataset $(or $(DATASET),fashion-mnist)

predict: setup ## Top-3 classes for image files: make predict IMAGES="shirt.jpg shoe.png" DATASET=fashion-mnist [VERSION=<commit>]
	@if [ -z "$(IMAGES)" ]; then echo 'name the image files: make predict IMAGES="shirt.jpg shoe.png"' >&2; exit 2; fi
	$(PYTHON) -m tools.predict --dataset $(or $(DATASET),fashion-mnist) $(if $(VERSION),--version '$(VERSION)') $(IMAGES)

serve: setup ## Start a Prefect server on 127.0.0.1:4200, the work pool, the deployments and a worker
	$(PYTHON) -m orchestration.serve serve

stop: ## Stop the server and worker that `make serve` started
	$(PYTHON) -m orchestration.serve stop

status: $(VENV)/.installed ## Server health, worker, each deployment's next and last run, service errors of the last hour
	$(PYTHON) -m orchestration.serve status

deployment-run: $(VENV)/.installed ## Run a deployment on the served Prefect: make deployment-run DATASET=mnist-sample
	$(PYTHON) -m orchestration.deployment_run --dataset $(or $(DATASET),fashion-mnist)

history: $(VENV)/.installed ## What each run did to a dataset, from the commits runs made: make history DATASET=mnist-sample
	$(PYTHON) -m versioning.history --dataset $(or $(DATASET),fashion-mnist)

# DATASET, TO and REASON reach the command through the environment, as for accept-drift below.
rollback: $(VENV)/.installed ## Restore an earlier champion: make rollback DATASET=shoes TO=<commit from make history> REASON="why"
	@if [ -z "$$DATASET" ] || [ -z "$$TO" ] || [ -z "$$REASON" ]; then \
	  echo 'name the dataset, the version and say why: make rollback DATASET=shoes TO=4be1c0d2a1 REASON="misses sandals"' >&2; \
	  exit 2; fi
	$(PYTHON) -m versioning.rollback --dataset "$$DATASET" --to "$$TO" --reason "$$REASON"

ingest: setup ## New images landed: make ingest DATASET=shoes [FROM=folder]; the served deployment runs at once
	$(PYTHON) -m orchestration.inbox --dataset $(or $(DATASET),fashion-mnist) $(if $(FROM),--from '$(FROM)')

# DATASET and REASON reach the command through the environment (make exports variables set on its command line), so
# a reason may hold any quote.
accept-drift: setup ## Train on data that drifted: make accept-drift DATASET=shoes REASON="new supplier's photos"
	@if [ -z "$$DATASET" ] || [ -z "$$REASON" ]; then \
	  echo 'name the dataset and say why: make accept-drift DATASET=shoes REASON="new supplier photos"' >&2; exit 2; fi
	$(PYTHON) -m tools.accept_drift --dataset "$$DATASET" --reason "$$REASON"

.PHONY: sweep
SWEEP_GRID ?= {"cnn.dense_units": [64, 256], "learning_rate": [0.001, 0.003]}
sweep: setup ## Trials in parallel on Dask, one DVC experiment each: make sweep GRID='{"cnn.dense_units": [64, 256]}' WORKERS=2
	$(PYTHON) -m flows.sweep --dataset $(or $(DATASET),mnist-sample) --grid '$(or $(GRID),$(SWEEP_GRID))' \
	  --workers $(or $(WORKERS),2) $(if $(SCHEDULER),--scheduler-address $(SCHEDULER))

# Tests run in parallel, a module per worker at a time (tests/conftest.py: pytest_xdist_make_scheduler). On 2 cores
# `make test` took 6 min 9 s with 2 workers against 9 min 51 s in one process (AMD EPYC, AVX-512): its tests wait on
# servers and subprocesses for half their time. The slow ones wait more (heartbeats, schedules, polls): 3 workers.
TEST_WORKERS ?= 2
SLOW_TEST_WORKERS ?= 3
test: setup chromium postgresql lint ## Run the test suite: unit, integration (dvc repro, Prefect flow, deployments), report in Chromium
	$(PYTHON) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadscope

LINTED = tasks orchestration versioning flows tools
lint: setup ## ruff and mypy over the code (pyproject.toml has their settings); make test runs it first
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy $(LINTED)

test-slow: setup postgresql ## What CI adds: served deployments on PostgreSQL, the load test, crashed runs, three machines...
	$(PYTHON) -m pytest -m "slow and not alone" -n $(SLOW_TEST_WORKERS) --dist loadscope; status=$$?; \
	  $(PYTHON) -m pytest -m "slow and alone" && exit $$status

bench: setup postgresql ## Benchmark the pipeline against the plain Keras script; prints verdicts, writes benchmarks/RESULTS.md
	$(PYTHON) -m benchmarks.bench

bench-production: setup postgresql ## Only make bench's production figures (runs per minute, pickup delay, clone and pull)
	$(PYTHON) -m benchmarks.production

bench-gates: setup ## Only make bench's data-gate figures: near-copies (false refusals, catches, speed), planted wrong labels
	$(PYTHON) -m benchmarks.data_gates

clean-outputs: ## Remove generated data, models and reports from the workspace (DVC's cache keeps them)
	rm -rf data/raw data/processed models reports
