# fibod: the two commands of the README are `make up` and `make test`.
# Debian's python3 where there is one: a venv made from it can be run by the
# unprivileged user the stack runs as (FIBOD_RUN_USER), while one made from a
# python under /root (pyenv) cannot: /root is 0700 (docs/OPERATIONS.md).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: deps install up down status test unit bench profile lint settings-doc clean \
	cluster-up cluster-status cluster-down cluster-test

# Debian packages (redis-server, nginx, Java, Maven, ...): installs only what is missing.
deps:
	bash scripts/deps.sh

install: $(STAMP)

$(STAMP): pyproject.toml setup.py fibod/_fastfib.pyx fibod/_fastfib_core.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q setuptools wheel "Cython>=3.0"
	$(PY) -m pip install -q --no-build-isolation --config-settings editable_mode=compat -e ".[dev]"
	touch $(STAMP)

up: deps install
	bash scripts/up.sh

down:
	bash scripts/down.sh

status:
	bash scripts/status.sh

# The multi-host rehearsal: every host of ops/cluster/inventory.toml in a
# network namespace of this machine (root). docs/DEPLOYMENT.md.
cluster-up: deps install
	bash ops/kafka/fetch.sh
	$(PY) scripts/cluster.py up

cluster-status:
	$(PY) scripts/cluster.py status

cluster-down:
	@if [ -x $(PY) ]; then $(PY) scripts/cluster.py down; else echo "cluster: no .venv, nothing to stop"; fi

# Infrastructure tests of the rehearsal: they bring it up and take it down.
cluster-test: deps install
	bash ops/kafka/fetch.sh
	$(PY) -m pytest -q tests/cluster --cluster

# Unit tests need no servers; integration tests start the stack themselves.
test: deps install
	$(PY) -m pytest -q tests

unit: install
	$(PY) -m pytest -q tests -m "not integration"

bench: install
	$(PY) -m pytest -q bench --benchmark-only -s

# Where the kernel's time goes (docs/BENCHMARKS.md): the C driver of
# fibod/_fastfib_core.h, then the `fibod fib` breakdown.
profile: install
	mkdir -p var
	cc -O3 -o var/kernel_profile bench/kernel_profile.c -lm
	var/kernel_profile
	$(PY) bench/fib_profile.py

# Regenerate the settings table of docs/OPERATIONS.md from fibod/config.py.
settings-doc: install
	$(PY) -m fibod.config --update-doc docs/OPERATIONS.md

lint: install
	$(VENV)/bin/ruff check fibod tests bench scripts ops
	$(VENV)/bin/ruff format --check fibod tests bench scripts ops
	$(VENV)/bin/mypy fibod

clean:
	rm -rf build fibod/_fastfib.c fibod/*.so *.egg-info
