# shortcutlab: `make study` runs the whole study, `make test` runs the test suite.
# Every step a fresh machine needs is here; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STUDY_DIR ?= study
STUDY_ARGS ?=
PYTEST_ARGS ?=
TORCH_VERSION := 2.13.0
SETUP_STAMP := $(VENV)/.stamp-setup

.PHONY: setup study study-quick test test-fast lint bench services browser fashion-mnist clean help

help:
	@echo "make study   set up, fetch MNIST, run the whole study, write $(STUDY_DIR)/report.html"
	@echo "make test    set up and run the test suite (starts the services tests need)"
	@echo "make bench   run the benchmarks in benchmarks/"
	@echo "make lint    ruff"

setup: $(SETUP_STAMP)

# torch first: the pinned CPU build (on this machine's disk; PyPI's elsewhere), so that
# nothing later pulls a multi-GB CUDA build. Peer libraries used only as test oracles
# import torchvision; they go in without their dependencies (see requirements-peers.txt).
$(SETUP_STAMP): pyproject.toml requirements-peers.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-peers.txt
	touch $(SETUP_STAMP)

study: setup
	$(BIN)/shortcutlab study --out $(STUDY_DIR) $(STUDY_ARGS)
	@echo "report: $(STUDY_DIR)/report.html"

study-quick: setup
	$(BIN)/shortcutlab study --out $(STUDY_DIR)-quick --quick $(STUDY_ARGS)

services:
	./scripts/services.sh start

# The report is tested in a real headless Chromium: Debian's package, never a download.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium is missing: sudo apt-get install chromium (browser tests will fail)"; fi; }

# Real Fashion-MNIST for the IDX and fetch tests: Debian's package, skipped when present,
# when not root or without apt (those tests are then skipped, not failed).
FASHION_DIR := /usr/share/datasets/fashion-mnist
fashion-mnist:
	@test -d $(FASHION_DIR) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist \
	    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; } \
	    || echo "could not install dataset-fashion-mnist: its tests will be skipped"; \
	  else echo "dataset-fashion-mnist is missing (sudo apt-get install dataset-fashion-mnist): its tests will be skipped"; fi; }

test: setup services browser fashion-mnist
	SHORTCUTLAB_PROGRESS=0 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	SHORTCUTLAB_PROGRESS=0 $(PY) -m pytest -m "not slow and not postgres and not browser" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
