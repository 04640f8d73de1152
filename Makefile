# Two commands on a fresh Debian machine with Python 3.11 (root available):
#   make run    Redis, MariaDB and the Ronglian (:8883) and Aliyun (:8884) sandboxes on loopback,
#               then the server on 127.0.0.1:8000
#   make test   the whole test suite against real processes
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_PACKAGES := redis-server mariadb-server
# Tests also drive a real browser (with a CJK font for the Chinese UI), run nginx and a
# 3-node MariaDB Galera cluster (galera-4; rsync moves a joining node's data), and check the
# Prometheus rules and dashboard with promtool and a real Prometheus (prometheus).
TEST_PACKAGES := $(RUN_PACKAGES) chromium nginx fonts-wqy-microhei galera-4 rsync prometheus
.PHONY: run test lint format bench bench-quick bench-attack bench-fraud bench-login clean

run: $(VENV)/.installed
	@bash scripts/install-system-deps.sh $(RUN_PACKAGES)
	$(PY) -m devstack.run

# Two workers, a test file whole on one (its session fixtures start their own servers on free
# ports); the OpenAPI file alone after them: its generated cases and the check that they all
# ran share one process.
test: $(VENV)/.installed-dev
	@bash scripts/install-system-deps.sh $(TEST_PACKAGES)
	$(PY) -m pytest -n 2 --dist loadfile --ignore=tests/test_openapi.py
	$(PY) -m pytest tests/test_openapi.py

# Side-by-side benchmark (docs/PERFORMANCE.md); installs its own extras from bench/requirements.txt.
# Then the attack mix (bench-attack below).
bench: $(VENV)/.installed-dev
	@bash scripts/install-system-deps.sh $(RUN_PACKAGES)
	$(PY) -m bench.run
	$(PY) -m bench.attack_mix

# The same, a few minutes instead of ~25: one round, 100 ms upstream only, short cells; one
# attack mix, its hour in 20 s.
bench-quick: $(VENV)/.installed-dev
	@bash scripts/install-system-deps.sh $(RUN_PACKAGES)
	$(PY) -m bench.run --quick
	$(PY) -m bench.attack_mix --quick

# The same SMS-pumping mix at the same rate against ours, the naive handler (c+) and the
# tutorials' Flask design: SMS and yuan per legitimate registration (about 8 minutes).
bench-attack: $(VENV)/.installed-dev
	@bash scripts/install-system-deps.sh $(RUN_PACKAGES)
	$(PY) -m bench.attack_mix

# SMS-pumping simulation, today vs now (docs/FRAUD.md): three runs of a simulated hour, about 5 min each.
bench-fraud: $(VENV)/.installed-dev
	@bash scripts/install-system-deps.sh $(RUN_PACKAGES)
	$(PY) -m bench.fraud

# A login flood (40 clients, each guess another account and address) against one process,
# before (no hash bound, no adaptive CAPTCHA) and after (shipped settings): ~2.5 min.
bench-login: $(VENV)/.installed-dev
	@bash scripts/install-system-deps.sh $(RUN_PACKAGES)
	$(PY) -m bench.login_flood

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

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
