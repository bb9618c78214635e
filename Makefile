# BioCLIP Lite. The two commands a newcomer needs:
#   make demo   - set up .venv + node_modules, then run the whole chain on built-in demo data
#   make test   - set up the same, then run every test (Python and JS)
# Everything is installed by these targets; nothing needs installing by hand.

SHELL := /bin/bash
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMPS := .stamps
FORCE ?= 0
PYTEST_ARGS ?=

# tfmot is Keras-2 only: every TF process uses tf_keras.
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

NODE_DIRS := react-bio-clip
# react-bio-clip's dist/ (tsc output): the Python side runs react-bio-clip/scripts/run_tfjs.js,
# which requires it, and the Python tests run before test-js (whose `npm test` also rebuilds).
RBC_BUILD_INPUTS := $(shell find react-bio-clip/src -type f) react-bio-clip/tsconfig.json \
  react-bio-clip/package-lock.json

.PHONY: figures demo disk-check test test-python test-js test-browser test-example example-bundle chromium bench bench-browser setup clean-demo help

help:
	@echo "make demo    run the whole chain on demo data into runs/demo/ (FORCE=1 redoes all)"
	@echo "make test    run every test, Python and JS"
	@echo "make bench   run the benchmarks into bench/results/ and bench/RESULTS.md"
	@echo "make figures rewrite every README/RESULTS.md figures block from bench/results/*.json"
	@echo "make example-bundle  build react-bio-clip/example for Android + iOS (Hermes), Expo SDK 58 and 57"

setup: $(STAMPS)/python $(STAMPS)/node $(STAMPS)/react-bio-clip-dist

# The lock was verified to install together on Python 3.11 (see README.md): tensorflowjs pins
# TF 2.19.0, TF pins protobuf 5, torchvision needs its matching torch. --no-compile: byte-compiling
# every module of TF, torch and their dependencies at install costs set-up CPU time for files
# most runs never import (Python compiles what it imports, once).
$(STAMPS)/python: requirements/lock.txt setup.py
	@mkdir -p $(STAMPS)
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check 'pip<26'
	$(PIP) install --disable-pip-version-check --progress-bar off --no-compile -r requirements/lock.txt
	$(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $@

$(STAMPS)/node: $(foreach d,$(NODE_DIRS),$(wildcard $(d)/package-lock.json))
	@mkdir -p $(STAMPS)
	@for d in $(NODE_DIRS); do \
	  if [ -f $$d/package-lock.json ]; then \
	    echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --prefer-offline) || exit 1; \
	  fi; \
	done
	@touch $@

$(STAMPS)/react-bio-clip-dist: $(STAMPS)/node $(RBC_BUILD_INPUTS)
	@mkdir -p $(STAMPS)
	cd react-bio-clip && npm run build --silent
	@touch $@

# The set-up's wall and CPU seconds (bash `times`: shell, then children) go to
# runs/demo_setup_times.txt, which the demo records as the `setup` row of runs/demo/timings.json.
demo:
	@mkdir -p runs
	@start=$$(date +%s.%N); $(MAKE) --no-print-directory setup && \
	  { awk "BEGIN {print $$(date +%s.%N) - $$start}"; times; } > runs/demo_setup_times.txt
	$(PYTHON) -m pipeline.demo --out_dir=runs/demo --force=$(FORCE) \
	  --setup_times=runs/demo_setup_times.txt
	$(MAKE) --no-print-directory figures

# Every `<!-- figures:ID -->` block of every README.md and bench/RESULTS.md, from
# bench/results/*.json (and a finished runs/demo, snapshot into bench/results/demo.json).
figures:
	$(PYTHON) -m bench.figures

# A clean clone's `make test` takes about 12 GB on this disk (.venv 8.3 GB with torch's CUDA
# wheels, node_modules 2.2 GB, runs/ and pytest's temporary files); with less free, tests fail
# late with "No space left on device" in whatever they happen to be writing. Say so up front.
TEST_DISK_GB := 15
disk-check:
	@df -h . /tmp | sed 's/^/disk: /'
	@free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free_gb" -lt $(TEST_DISK_GB) ]; then \
	    echo "WARNING: $$free_gb GB free here; make test needs about $(TEST_DISK_GB) GB (tests may fail with ENOSPC)"; \
	  fi

test: disk-check setup
	$(MAKE) --no-print-directory test-python
	$(MAKE) --no-print-directory test-js
	$(MAKE) --no-print-directory test-example
	$(MAKE) --no-print-directory test-browser

# pytest keeps only the temporary directories of failed tests, of the last run (a passing run
# writes a random ViT-B-16 checkpoint or two, ~600 MB each); short tracebacks keep a failure's
# cause within the tail of a CI log.
test-python:
	$(PYTHON) -m pytest -q -p no:cacheprovider --tb=short -o tmp_path_retention_policy=failed \
	  -o tmp_path_retention_count=1 tests $(PYTEST_ARGS)

# The JS parity tests run against a fixture that this run's Python export stage makes, so a
# change on either side of the TF.js boundary is caught in the same `make test`.
# The camera-path pixel references (textured 1080x1920 and 4032x3024 frames through the training
# resize, ~90 MB) and the browser fixture (the real MobileNetV3 student exported, ~2 min) are
# remade only when their script or the Python package changes.
PY_SOURCES := $(shell find bioclip_lite_tf formats -name '*.py' 2>/dev/null)
RESIZE_REFERENCE := runs/resize_reference
BROWSER_FIXTURE := runs/browser_fixture

$(RESIZE_REFERENCE)/frames.json: react-bio-clip/scripts/make_resize_reference.py $(PY_SOURCES)
	$(PYTHON) react-bio-clip/scripts/make_resize_reference.py --out_dir=$(RESIZE_REFERENCE)

$(BROWSER_FIXTURE)/expected.json: react-bio-clip/scripts/make_browser_fixture.py $(PY_SOURCES)
	$(PYTHON) react-bio-clip/scripts/make_browser_fixture.py --out_dir=$(BROWSER_FIXTURE)

test-js: $(RESIZE_REFERENCE)/frames.json
	$(PYTHON) react-bio-clip/scripts/make_fixture.py --out_dir=runs/react_fixture
	cd react-bio-clip && REACT_BIO_CLIP_FIXTURES=$(CURDIR)/runs/react_fixture \
	  REACT_BIO_CLIP_RESIZE_REFERENCE=$(CURDIR)/$(RESIZE_REFERENCE) npm test

# WebGL in a real browser: Debian's chromium (installed here when missing; never a downloaded
# browser) driven by puppeteer-core; the demo page's screenshot lands in runs/browser/.
BROWSER_ENV = REACT_BIO_CLIP_BROWSER_FIXTURE=$(CURDIR)/$(BROWSER_FIXTURE) \
	REACT_BIO_CLIP_RESIZE_REFERENCE=$(CURDIR)/$(RESIZE_REFERENCE) \
	REACT_BIO_CLIP_SCREENSHOT_DIR=$(CURDIR)/runs/browser

chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y chromium; }

test-browser: chromium $(RESIZE_REFERENCE)/frames.json $(BROWSER_FIXTURE)/expected.json
	cd react-bio-clip && $(BROWSER_ENV) REACT_BIO_CLIP_BROWSER_REPORT=$(CURDIR)/runs/browser/report.json \
	  npm run test:browser

# The same run, its measurements written where READMEs cite them from.
bench-browser: setup chromium $(RESIZE_REFERENCE)/frames.json $(BROWSER_FIXTURE)/expected.json
	cd react-bio-clip && $(BROWSER_ENV) REACT_BIO_CLIP_BROWSER_REPORT=$(CURDIR)/bench/results/webgl_browser.json \
	  npm run test:browser
	cd react-bio-clip && node bench/resize_parity.js --reference_dir=$(CURDIR)/$(RESIZE_REFERENCE) \
	  --out=$(CURDIR)/bench/results/resize_parity.json
	$(MAKE) --no-print-directory figures

# The example Expo app's JS bundles, Hermes bytecode included, for Android and iOS against Expo
# SDK 58 (react-bio-clip/example) and 57 (example/sdk57): npm ci, tsc and `npx expo export` per
# SDK, on an export the fixture script makes (no weights in git). Writes
# runs/example_bundles/bundle_sizes.json; example-bundle also refreshes the committed
# bench/results/expo_bundles.json and the README's support matrix from it.
EXAMPLE_BUNDLES := node react-bio-clip/example/scripts/build_bundles.js --export_dir=runs/react_fixture/export

test-example:
	@test -f runs/react_fixture/export/tflite/model_int8.tflite || \
	  $(PYTHON) react-bio-clip/scripts/make_fixture.py --out_dir=runs/react_fixture
	$(EXAMPLE_BUNDLES) --check_readme=react-bio-clip/README.md

example-bundle: setup
	$(PYTHON) react-bio-clip/scripts/make_fixture.py --out_dir=runs/react_fixture
	$(EXAMPLE_BUNDLES) --results=bench/results/expo_bundles.json --readme=react-bio-clip/README.md
	$(MAKE) --no-print-directory figures

bench: setup
	$(PYTHON) -m bench.run_all --out_dir=bench/results
	$(MAKE) --no-print-directory figures

clean-demo:
	rm -rf runs/demo
