# The two commands of the README: `make serve` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL_REPOSITORY := artifacts/models
DEFAULT_MODEL := $(MODEL_REPOSITORY)/digits/1/model.onnx
PYTEST_ARGS ?=

.PHONY: serve test test-backends lint typecheck model bench bench-peers bench-ray-serve container-check grpc-stubs clean

$(BIN)/python:
	@echo "Creating $(VENV) and installing the dependencies into it: about 2 minutes the first time."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# One stamp per set of extras; reinstalled whenever pyproject.toml changes.
$(VENV)/.installed-train: pyproject.toml | $(BIN)/python
	@echo "Installing lc2d-serve with the train extra (TensorFlow, Keras, onnx) into $(VENV)..."
	$(BIN)/pip install --progress-bar off -e '.[train]'
	@echo "Installed. The command line is $(BIN)/lc2d (or run: source $(BIN)/activate)."
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "Installing lc2d-serve with the train and dev extras (TensorFlow, tf_keras, Ray, test tools) into $(VENV)..."
	$(BIN)/pip install --progress-bar off -e '.[train,dev]'
	@echo "Installed. The command line is $(BIN)/lc2d (or run: source $(BIN)/activate)."
	touch $@ $(VENV)/.installed-train

# PyTorch 2.13.0, CPU build: a local file on the project's machines (see docs/layer.md#backends).
$(VENV)/.installed-torch: pyproject.toml | $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[train,dev,torch]'
	touch $@

$(DEFAULT_MODEL): | $(VENV)/.installed-train
	$(BIN)/lc2d train --dataset digits --out artifacts/digits.keras --report artifacts/digits.json
	$(BIN)/lc2d export artifacts/digits.keras -o $@

model: $(DEFAULT_MODEL)

serve: $(DEFAULT_MODEL)
	@echo "Serving $(DEFAULT_MODEL) on http://$(HOST):$(PORT) — API docs at http://$(HOST):$(PORT)/docs"
	$(BIN)/lc2d serve --model-repository $(MODEL_REPOSITORY) --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy models export service lc2d

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The layer's suite under JAX and PyTorch, whole grids and slow tests included, each backend in a
# child process (tests/models/test_backends.py); `make test` runs JAX on a covering grid.
test-backends: $(VENV)/.installed-torch
	LC2D_TEST_BACKENDS=jax,torch LC2D_TEST_GRID=full $(BIN)/python -m pytest tests/models/test_backends.py $(PYTEST_ARGS)

# The fuzz suite of `make test` (HTTP bodies, OpenAPI operations, gRPC RPCs), longer: FUZZ_EXAMPLES examples
# per test (5 x for gRPC ModelInfer, 1 / 5 per API operation), random seeds.
FUZZ_EXAMPLES ?= 1000
fuzz: $(VENV)/.installed-dev
	LC2D_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -q

bench: $(VENV)/.installed-dev
	$(BIN)/lc2d bench

# lc2d serve against MLServer, BentoML and Ray Serve; each peer gets its own virtual environment
# (pinned) under $$LC2D_PEERS_DIR (default ~/.cache/lc2d-peers), made on first use: docs/peers.md
bench-peers: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.bench_peers $(BENCH_PEERS_ARGS)

# lc2d serve --ray against lc2d serve, same model, interleaved rounds (docs/scaling.md)
bench-ray-serve: $(DEFAULT_MODEL) | $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.bench_ray_serve --model $(DEFAULT_MODEL) --json-out docs/bench_ray_serve.json

# regenerate service/grpc/inference_pb2*.py(i) after editing service/grpc/inference.proto
grpc-stubs: $(VENV)/.installed-dev
	$(BIN)/python scripts/generate_grpc_stubs.py

container-check:
	bash scripts/container-check.sh

clean:
	rm -rf artifacts .pytest_cache .ruff_cache .mypy_cache
