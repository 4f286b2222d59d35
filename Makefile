# The two commands a newcomer runs (see README.md):
#   make demo   set up, then `armillary up examples/quickstart`: a server and a local
#               node run two tenants' stacks as real processes until Ctrl-C
#   make test   set up and run every check CI runs
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint unit integration clean

$(BIN)/armillary: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/armillary
	$(BIN)/armillary up examples/quickstart $(DEMO_FLAGS)

lint: $(BIN)/armillary
	$(BIN)/ruff check src tests examples $(wildcard bench)
	$(BIN)/ruff format --check src tests examples $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(BIN)/armillary
	$(BIN)/pytest tests/unit -q

integration: $(BIN)/armillary
	sh scripts/ensure-postgres.sh
	$(BIN)/pytest tests/integration -q

test: lint
	sh scripts/ensure-postgres.sh
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .armillary .pytest_cache .mypy_cache .ruff_cache
