# filterscope: `make demo` and `make test` bootstrap everything they need on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
JS_BUNDLE := src/filterscope/static/widget.js
# Wheels for the fresh venvs of the packaging and Binder tests (see the wheelhouse target).
WHEELHOUSE := .cache/wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.filled
JS_SOURCES := $(shell find js/src -type f 2>/dev/null) js/package.json js/tsconfig.json js/build.mjs
# Keep tests and the demo quiet and offline.
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg
export BOKEH_RESOURCES := inline
export HF_HUB_OFFLINE := 1

.PHONY: help demo test test-py test-fast test-numerics test-js test-e2e test-nb lint format bench \
	lab clean chromium venv js wheelhouse docs test-docs

# Tests whose results depend on how the CPU's kernels round (float comparisons against oracles,
# float16 storage, PCA and EM accuracy). `make test` runs them a second and third time with
# torch's kernels forced to other instruction sets, as another x86 CPU would pick them.
NUMERICS_CAPABILITIES := default avx2

help:
	@echo "make demo           train LeNet-5 on digits, record runs/demo/log, find anomaly filters, write runs/demo/report.html"
	@echo "make test           every test below once (lint, test-js, test-py, test-numerics)"
	@echo "  make lint         ruff format --check, ruff check, mypy on src/"
	@echo "  make test-js      TypeScript typecheck, Biome, vitest"
	@echo "  make test-py      all of tests/ (slow and browser tests included), the doctests in src/ and the notebooks"
	@echo "  make test-numerics  the tests marked 'numerics' again under ATEN_CPU_CAPABILITY=$(NUMERICS_CAPABILITIES)"
	@echo "make test-fast      tests/ without the 'slow' and 'e2e' ones (a quick loop while developing)"
	@echo "make test-e2e       only the browser tests (real JupyterLab in headless Chromium)"
	@echo "make test-nb        only the notebooks"
	@echo "make lab            start JupyterLab on the notebooks/ (the demo log made first if missing)"
	@echo "make docs           build the documentation site into docs/_build/html (offline, warnings as errors)"
	@echo "make test-docs      only the docs build test (tests/test_docs.py; test-py runs it too)"
	@echo "make bench          run the benchmarks in benchmarks/"

# --- bootstrap -------------------------------------------------------------------------
js/node_modules/.package-lock.json: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund
	@touch $@

$(JS_BUNDLE): js/node_modules/.package-lock.json $(JS_SOURCES)
	cd js && npm run build

js: $(JS_BUNDLE)

# torch first and pinned: the CPU wheel of 2.13.0 lies on this machine's disk; any other spec
# downloads a multi-GB CUDA build. animal-mnist is installed without its dependencies because
# its metadata asks for tensorflow, which filterscope never imports.
$(STAMP): pyproject.toml $(JS_BUNDLE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "animal-mnist==0.4"
	@touch $@

venv: $(STAMP) $(WHEELHOUSE_STAMP)

# Every wheel the packaging and Binder tests install into fresh venvs, fetched at set-up so that
# the tests run offline (pip --no-index --find-links $(WHEELHOUSE) --find-links /opt/wheels):
# the declared dependencies, Binder's requirements, JupyterLab, Notebook 7 and the build backend.
# torch itself stays in /opt/wheels (pip's configured find-links), never copied or downloaded.
$(WHEELHOUSE_STAMP): pyproject.toml binder/requirements.txt | $(STAMP)
	mkdir -p $(WHEELHOUSE)
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
	  print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' \
	  > $(WHEELHOUSE)/requirements.txt
	grep -v -e '^--' -e '^torch' binder/requirements.txt >> $(WHEELHOUSE)/requirements.txt
	printf '%s\n' "jupyterlab>=4.2" "notebook>=7" "ipykernel>=6.29" nbclient build \
	  >> $(WHEELHOUSE)/requirements.txt
	$(PIP) wheel -q --wheel-dir $(WHEELHOUSE) "torch==2.13.0" -r $(WHEELHOUSE)/requirements.txt
	$(PIP) wheel -q --wheel-dir $(WHEELHOUSE) --no-deps "animal-mnist==0.4"
	rm -f $(WHEELHOUSE)/torch-*.whl
	@touch $@

wheelhouse: $(WHEELHOUSE_STAMP)

# Debian's chromium for the browser tests; installed only when missing and we are root.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium)"; exit 1; \
	  fi; \
	fi

# --- the two commands ------------------------------------------------------------------
demo: $(STAMP)
	$(VENV)/bin/filterscope demo

test: $(STAMP) chromium lint test-js test-py test-numerics

# One pytest run for everything Python, so xdist keeps both cores busy across all of it.
# FILTERSCOPE_SMALL=1: the notebooks pick their small settings (all of them in under 5 minutes).
test-py: $(STAMP) $(WHEELHOUSE_STAMP) chromium
	FILTERSCOPE_SMALL=1 $(PY) -m pytest -m "not cuda" -n 2 --dist loadgroup tests src/filterscope \
	  --doctest-modules --nbmake notebooks

test-numerics: $(STAMP)
	for cap in $(NUMERICS_CAPABILITIES); do \
	  echo "== numerics-sensitive tests under ATEN_CPU_CAPABILITY=$$cap"; \
	  ATEN_CPU_CAPABILITY=$$cap $(PY) -m pytest -m "numerics and not cuda" -n 2 -q tests; \
	done

test-fast: $(STAMP)
	$(PY) -m pytest -m "not cuda and not slow and not e2e" -n 2 tests

test-js: js/node_modules/.package-lock.json
	cd js && npm run typecheck && npm run lint && npm test

test-e2e: $(STAMP) chromium
	$(PY) -m pytest -m e2e tests/e2e

test-nb: $(STAMP)
	FILTERSCOPE_SMALL=1 $(PY) -m pytest --nbmake notebooks

# The site: Sphinx + pydata-sphinx-theme + numpydoc + myst-nb (notebooks shown as committed).
docs: $(STAMP)
	$(PY) -m sphinx -E -b html -W --keep-going -n docs docs/_build/html
	@echo "open docs/_build/html/index.html"

test-docs: $(STAMP)
	$(PY) -m pytest -q tests/test_docs.py

lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests benchmarks studies
	$(VENV)/bin/ruff check src tests benchmarks studies
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks studies
	$(VENV)/bin/ruff check --fix src tests benchmarks studies
	cd js && npm run format

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

lab: $(STAMP)
	$(VENV)/bin/filterscope lab notebooks

clean:
	rm -rf $(VENV) js/node_modules src/filterscope/static runs test-artifacts .pytest_cache .mypy_cache .ruff_cache \
	  docs/_build
