# The two commands a newcomer runs (see README.md):
#   make demo   set up, then `armillary up examples/quickstart`: a server and a local
#               node run two tenants' stacks as real processes until Ctrl-C
#   make test   set up and run every check CI runs (tests on two workers), and print
#               the test processes' coverage
#   make coverage   the same tests, measuring the servers and node daemons they start too
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test coverage lint unit integration clean

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
	sh scripts/ensure-prometheus.sh
	$(BIN)/pytest tests/unit -q

integration: $(BIN)/armillary
	sh scripts/ensure-postgres.sh
	sh scripts/ensure-prometheus.sh
	$(BIN)/pytest tests/integration -q

# The suite runs on two xdist workers (TEST_WORKERS): most of its time is spent waiting
# on the servers and node daemons it starts, so two workers on two cores finish it in
# about half the time. A unit of work is a module on one store backend
# (tests/support/scheduling.py).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope

# Coverage is a report, not a gate: pytest-cov measures every worker and combines them.
# `make test NO_COVERAGE=1`: the same checks without the tracer and its report (the
# test processes' own Python code then runs at full speed; see pyproject.toml).
test: lint
	sh scripts/ensure-postgres.sh
	sh scripts/ensure-prometheus.sh
	sh scripts/ensure-chromium.sh
	rm -f .coverage .coverage.*
ifdef NO_COVERAGE
	$(PYTEST)
else
	$(PYTEST) --cov --cov-report=term
endif

# COVERAGE_FILE is absolute so that children started in temporary directories write
# their data here; COVERAGE_PROCESS_START starts the tracer in every Python child.
coverage: $(BIN)/armillary
	sh scripts/ensure-postgres.sh
	sh scripts/ensure-prometheus.sh
	sh scripts/ensure-chromium.sh
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml $(PYTEST) --cov --cov-report=term

clean:
	rm -rf $(VENV) .armillary .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
