# Two commands for a new user: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
DEMO_TIME ?= 60

.PHONY: demo test test-fast lint docs bench venv chromium clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, with pip: on these machines torch==2.13.0 resolves to a local CPU wheel, while an
# unpinned torch pulled in by another package would download a multi-GB CUDA build. The project
# and its extras then go in with uv, which keeps the installed torch (it satisfies the pin) and
# installs the same versions as pip in a fraction of its time (126 s with pip on a fresh venv
# here). --compile-bytecode as pip does: with PYTHONDONTWRITEBYTECODE=1 (set on these machines)
# nothing writes .pyc files later, every Ray worker compiled Ray from source at start-up, and
# `make test` took 2,101 s instead of ~1,100.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0 uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[test,docs]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m automl.demo --output $(DEMO_DIR) --time-limit $(DEMO_TIME)

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# the tests without the `slow` marker (no long fits, clusters or load tests): a quick loop
test-fast: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow"

# Debian's chromium renders the HTML report in the browser tests: use the machine's, or install
# it here (root or sudo), before pytest starts; tests never install anything themselves
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	  echo "installing Debian's chromium for the browser tests (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { \
	    $$SUDO apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null; } || { \
	    echo "could not install chromium: install Debian's chromium package (or set CHROMIUM=/path)"; exit 1; }; }

# ruff's linter and formatter (pinned in the test extras), as CI runs them
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the documentation site (docs/, mkdocs.yml); --strict makes a broken link, a missing anchor or a
# page left out of the nav an error (NO_MKDOCS_2_WARNING: mute Material's end-of-life banner)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs
