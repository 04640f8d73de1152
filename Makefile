# Two commands on a fresh Debian machine with Python 3.11 (root available):
#   make run    Redis, MariaDB and the Ronglian sandbox on loopback, then the server on 127.0.0.1:8000
#   make test   the whole test suite against real processes
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := redis-server mariadb-server
.PHONY: run test lint format system-deps venv bench clean

run: system-deps $(VENV)/.installed
	$(PY) -m devstack.run

test: system-deps $(VENV)/.installed-dev
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Installs the Debian packages only when a binary is missing (needs root or sudo).
system-deps:
	@bash scripts/install-system-deps.sh $(DEB_PACKAGES)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

clean:
	rm -rf var .pytest_cache
