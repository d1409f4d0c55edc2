# Two commands do all set-up on a fresh machine:
#   make run   - venv (runtime packages), migrations, default policy, then the whole product:
#                web server on :8000, Celery worker and beat, the sandbox upstream (Ctrl-C stops all)
#   make test  - venv with the dev packages, then the whole test suite (DATABASE_URL / REDIS_URL
#                select the backends)
# huntaze/settings.py finds the tokenizer files (../shared/tiktoken) for every entry point.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
SANDBOX_PORT ?= 8765
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install install-dev run serve-prod test lint simulate bench bench-engine bench-dashboard bench-ttfb bench-whatif drill train-router eval-router

# What production runs (requirements.txt), and on top of it what tests and development need.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@ $(VENV)/.installed

# The learned router's scoring kernel and the complexity window counts, compiled in place
# (Cython; numpy and plain Python stand in without them). One build makes both.
KERNEL := routing/learned/kernel$(shell python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
$(KERNEL): routing/learned/kernel.pyx routing/complexity_scan.pyx scripts/build_kernel.py $(VENV)/.installed
	$(PY) scripts/build_kernel.py

install: $(VENV)/.installed $(KERNEL)
install-dev: $(VENV)/.installed-dev $(KERNEL)

# scripts/run_all.py: migrate, seed_policy, collectstatic, then every process under honcho.
run: install
	exec $(PY) scripts/run_all.py --host $(HOST) --port $(PORT) --sandbox-port $(SANDBOX_PORT)

# Production: gunicorn + uvicorn workers (huntaze/gunicorn.conf.py; WEB_CONCURRENCY, BIND, ...),
# with the variables of .env.example set (PostgreSQL DATABASE_URL, REDIS_URL, ...).
serve-prod: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_policy
	$(PY) manage.py collectstatic --noinput --verbosity 0
	exec $(VENV)/bin/gunicorn -c huntaze/gunicorn.conf.py

test: install-dev
	$(VENV)/bin/pytest

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the import contracts in pyproject.toml
	$(PY) manage.py makemigrations --check --dry-run

simulate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_policy
	$(PY) manage.py simulate --requests 10000

# Router vs direct stub under wrk, 1 and 2 gunicorn workers, PostgreSQL + Redis on 127.0.0.1
# (needs wrk: apt-get install -y wrk). BENCH_ARGS=--quick runs a few seconds per point.
bench: install-dev
	$(PY) bench/gateway_bench.py $(BENCH_ARGS)

bench-engine: install-dev
	$(PY) bench/engine_bench.py

# 1M ledger rows in a throw-away PostgreSQL database (BENCH_PG_URL names the server).
bench-dashboard: install-dev
	$(PY) bench/dashboard_bench.py

bench-ttfb: install-dev
	$(PY) bench/ttfb_bench.py

drill: install-dev
	DRILL_SCALE=1 $(VENV)/bin/pytest -s tests/drills

bench-whatif: install-dev
	$(PY) bench/whatif_bench.py

# The learned router: train a new artifact from ../shared/traindata (+ routing/learned/examples),
# and the leave-one-source-out report beside the keyword classifier (a few minutes each).
train-router: install-dev
	$(PY) manage.py train_router

eval-router: install-dev
	$(PY) -m routing.learned.evaluation
