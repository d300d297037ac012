# shoal: `make run` serves on http://127.0.0.1:3000 (data in ./data); `make test` runs
# the whole suite. Both create .venv on first use; only python3 >= 3.11 is needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: venv run test lint bench clean fuzz bytecode

venv: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "shoal needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "'$(PYTHON) -m venv' failed; on Debian/Ubuntu install the python3-venv package" >&2; exit 1; }

# `make run` installs only the runtime dependencies; `make test` adds the test extras.
# Each re-installs only when pyproject.toml, or the C module it builds in place
# (storage/_durable.c: optional, skipped without a compiler), changed since.
$(STAMP): pyproject.toml storage/_durable.c | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e .
	@touch $(STAMP)

$(TEST_STAMP): pyproject.toml storage/_durable.c | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	@touch $(STAMP) $(TEST_STAMP)

# shoal's modules byte-compiled before a start, as a wheel install does, so a start loads
# them instead of compiling them, also where PYTHONDONTWRITEBYTECODE keeps Python from
# caching what it compiles (there, start to first answer ~330 -> ~230 ms on 2 CPUs; the
# test suite starts hundreds of servers). Up to date, this takes ~60 ms.
PACKAGES := shoal app auth cluster config sse storage
bytecode: venv
	@$(BIN)/python -m compileall -q $(PACKAGES)

run: bytecode
	$(BIN)/shoal serve --address 127.0.0.1 --port 3000 --dir ./data

test: $(TEST_STAMP) bytecode
	$(BIN)/python -m pytest -n auto

# The Hypothesis suites with the random "fuzz" profile, capped per test (FUZZ_MAX_EXAMPLES,
# FUZZ_TEST_SECONDS), then the raw request fuzzer against real servers in every mode for
# FUZZ_SECONDS in all (findings under FUZZ_OUT). A few minutes; see README "Development".
FUZZ_MAX_EXAMPLES ?= 400
FUZZ_TEST_SECONDS ?= 20
FUZZ_SECONDS      ?= 180
FUZZ_OUT          ?= /tmp/shoal-fuzz-findings
fuzz: $(TEST_STAMP)
	HYPOTHESIS_PROFILE=fuzz FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS) \
	  $(BIN)/python -m pytest -p tests.fuzz.budget -n 2 -q $$(grep -l '^from hypothesis' tests/unit/*.py)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_OUT=$(FUZZ_OUT) $(BIN)/python -m tests.fuzz.raw

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP)
	@if [ -f bench/run.py ]; then $(BIN)/python bench/run.py; else $(BIN)/python -m bench; fi

# ./data (what `make run` stored) is left alone on purpose.
clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
