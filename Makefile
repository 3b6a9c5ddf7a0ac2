# Field Station. Every target creates .venv and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all venv test test-fast demo lint format bench clean system-deps

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian tools the root-only tests use (network namespaces, syscall audit).
# Only attempted as root and only when missing; never fatal.
system-deps:
	@if [ "$$(id -u)" = 0 ] && ! command -v ip >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && ! command -v strace >/dev/null 2>&1; }; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 strace >/dev/null) \
		|| echo "system-deps: could not install iproute2/strace; root tests will say why they skip"; \
	fi

# The whole suite. pytest's exit code 5 (nothing collected) is a failure here.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; exit $$rc

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/station simulate

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
