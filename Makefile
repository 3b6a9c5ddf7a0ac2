# Field Station. Every target creates .venv and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all venv test test-slow test-all demo lint format bench clean system-deps

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests and benchmarks use: iproute2 (network namespaces), strace
# (write audit), chromium and xvfb (the kiosk page's browser tests; Playwright drives
# /usr/bin/chromium, browser downloads are not possible) and mosquitto (the benchmark's
# MQTT baseline). Only attempted as root and only for what is missing; never fatal.
SYSTEM_TOOLS := ip:iproute2 strace:strace chromium:chromium Xvfb:xvfb mosquitto:mosquitto
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		tool=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "system-deps: installing$$missing"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
		|| echo "system-deps: could not install$$missing; the tests that need them will say why they skip"; \
	elif [ -n "$$missing" ]; then \
		echo "system-deps: missing$$missing (run as root to install); the tests that need them will say why they skip"; \
	fi

# The default suite (a few minutes): everything but the long drills and soaks marked
# `slow`, which CI runs too (`make test-slow`, see .ci/run). pytest's exit code 5
# (nothing collected) is a failure here.
# The default suite runs in 3 pytest-xdist workers: most of its time is spent waiting on
# real processes, sockets and timers, not on CPU (about 4 minutes instead of 7 on 2 cores).
# The slow suite stays serial: its figures (pairing within 2 s under a flood...) are the
# issues' must-shows and another suite's load would only blur them.
TEST_WORKERS ?= 3
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -m 'not slow' -n $(TEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; exit $$rc

test-slow: $(STAMP) system-deps
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no slow tests were collected: failing"; exit 1; fi; exit $$rc

test-all: test test-slow

demo: $(STAMP)
	$(BIN)/station simulate

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
