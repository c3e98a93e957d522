# Two commands for a new user: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
DEMO_TIME ?= 60

.PHONY: demo test test-fast lint bench venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: on these machines torch==2.13.0 resolves to a local CPU wheel, while an
# unpinned torch pulled in by another package would download a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m automl.demo --output $(DEMO_DIR) --time-limit $(DEMO_TIME)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff's linter and formatter (pinned in the test extras), as CI runs them
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs
