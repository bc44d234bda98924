# Everything a fresh machine needs is installed from here; nothing lives only in a shell history.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test test-fast lint bench bench-neu bench-mt base-image images test-images clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the local CPU wheel. An unpinned torch would pull the CUDA build.
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[worker,dev]'
	# The /ui browser test drives Debian's chromium through playwright (a dev dependency);
	# never `playwright install`, which downloads a browser.
	command -v chromium >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	touch $(STAMP)

# Migrate the SQLite database under var/, start one compression worker beside the API and
# serve the shipped model on 127.0.0.1:8000 (DATABASE_URL, MODEL_STORE, MODEL_NAME, MODEL_ALIAS,
# DATA_ROOT, JOBS_DIR from the environment override). When the API stops, the worker gets
# SIGTERM: a job it was running goes back to the queue and resumes at the next start.
run: install
	$(PY) -m service migrate
	$(PY) -m service worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(PY) -m service serve --host 127.0.0.1 --port 8000

test: install
	$(VENV)/bin/ruff check service tests benchmarks
	$(PY) -m pytest -q

# The quick loop while editing: every test that needs no torch (no nets, training or
# compression), no browser and no other process. `make test` runs everything, as CI does.
test-fast: install
	$(VENV)/bin/ruff check service tests benchmarks
	$(PY) -m pytest -q -m "not (torch or browser or subprocess or slow)"

lint: install
	$(VENV)/bin/ruff check service tests benchmarks
	$(VENV)/bin/ruff format --check service tests benchmarks

# The benchmarks live in benchmarks/ (not installed): each runs as a module from this folder.
bench: install
	$(PY) -m benchmarks.codec
	$(PY) -m service macs
	# The production model on the 20 real Severstal strips (../shared/data; measurement only).
	$(PY) -m service evaluate-real
	# The best raw ONNX Runtime session vs the API over loopback HTTP, on the production model
	# (MODEL_STORE, MODEL_NAME, MODEL_ALIAS, MAX_BATCH, MAX_WAIT_MS, ONNX_THREADS from the
	# environment), with each kind of body.
	for body in raw jpeg png; do $(PY) -m benchmarks.serving --body $$body || exit 1; done
	# 1,000,000 inspections seeded into Postgres (--database-url; own schema, dropped after).
	$(PY) -m benchmarks.history

# Real data, long (hours on a CPU), resumable: run again and it goes on where it stopped.
# The baseline, then FPGM, random, scratch, L1 and Torch-Pruning's FPGM at the same MACs; the
# figures land in benchmarks/results/<dataset>-compression.json after every stage, the weights
# in BENCH_CACHE (default ~/.cache/strip-inspection).
bench-neu: install
	$(PY) -m benchmarks.compression neu

bench-mt: install
	$(PY) -m benchmarks.compression magnetic-tile

# Images (see the Dockerfile). BASE_IMAGE defaults to python:3.11-slim, pulled by name;
# `make base-image` builds a local stand-in from Debian's packages where no registry is reachable
# (then: make images BASE_IMAGE=strip-inspection-base:bookworm). WORKER_TORCH=cuda (default) or
# cpu; TORCH_CPU_INDEX names where the CPU build of torch comes from.
BASE_IMAGE ?= python:3.11-slim
LOCAL_BASE_IMAGE := strip-inspection-base:bookworm
WORKER_TORCH ?= cuda
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
DOCKER_BUILD := docker build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE)

base-image:
	command -v debootstrap >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y debootstrap; }
	$(SUDO) sh deploy/base-image.sh $(LOCAL_BASE_IMAGE)

images:
	$(DOCKER_BUILD) --target api --tag strip-inspection-api .
	$(DOCKER_BUILD) --target worker --build-arg WORKER_TORCH=$(WORKER_TORCH) \
		--build-arg TORCH_CPU_INDEX=$(TORCH_CPU_INDEX) --tag strip-inspection-worker:$(WORKER_TORCH) .

# Minutes, not part of `make test`: installs Debian's Docker engine, compose and debootstrap if
# missing, builds on the local base and checks the images and the compose stack for real.
test-images: install
	command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y docker.io docker-compose debootstrap; }
	BASE_IMAGE=$(LOCAL_BASE_IMAGE) bash deploy/test-images.sh

clean:
	rm -rf var .pytest_cache
