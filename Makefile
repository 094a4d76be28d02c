# The two commands of the README: `make serve` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL_REPOSITORY := artifacts/models
DEFAULT_MODEL := $(MODEL_REPOSITORY)/digits/1/model.onnx
PYTEST_ARGS ?=

.PHONY: serve test test-backends lint typecheck model bench container-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# One stamp per set of extras; reinstalled whenever pyproject.toml changes.
$(VENV)/.installed-train: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,dev]'
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

bench: $(VENV)/.installed-dev
	$(BIN)/lc2d bench

container-check:
	bash scripts/container-check.sh

clean:
	rm -rf artifacts .pytest_cache .ruff_cache .mypy_cache
