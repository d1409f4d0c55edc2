# Two commands do all set-up on a fresh machine:
#   make run   - venv, migrations, default policy, then the ASGI server on :8000 (idempotent)
#   make test  - venv, then the whole test suite (DATABASE_URL / REDIS_URL select the backends)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
SHARED_TIKTOKEN := $(abspath ../shared/tiktoken)
ifneq ($(wildcard $(SHARED_TIKTOKEN)),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED_TIKTOKEN)
endif

.PHONY: install run serve-prod test lint simulate bench bench-engine bench-dashboard bench-ttfb bench-whatif drill train-router eval-router

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_policy
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "Create a key with: $(PY) manage.py create_api_key my-app"
	$(VENV)/bin/uvicorn huntaze.asgi:application --host $(HOST) --port $(PORT)

# Production: gunicorn + uvicorn workers (huntaze/gunicorn.conf.py; WEB_CONCURRENCY, BIND, ...),
# with the variables of .env.example set (PostgreSQL DATABASE_URL, REDIS_URL, ...).
serve-prod: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_policy
	$(PY) manage.py collectstatic --noinput --verbosity 0
	exec $(VENV)/bin/gunicorn -c huntaze/gunicorn.conf.py

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

simulate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_policy
	$(PY) manage.py simulate --requests 10000

# Router vs direct stub under wrk, 1 and 2 gunicorn workers, PostgreSQL + Redis on 127.0.0.1
# (needs wrk: apt-get install -y wrk). BENCH_ARGS=--quick runs a few seconds per point.
bench: install
	$(PY) bench/gateway_bench.py $(BENCH_ARGS)

bench-engine: install
	$(PY) bench/engine_bench.py

# 1M ledger rows in a throw-away PostgreSQL database (BENCH_PG_URL names the server).
bench-dashboard: install
	$(PY) bench/dashboard_bench.py

bench-ttfb: install
	$(PY) bench/ttfb_bench.py

drill: install
	DRILL_SCALE=1 $(VENV)/bin/pytest -s tests/drills

bench-whatif: install
	$(PY) bench/whatif_bench.py

# The learned router: train a new artifact from ../shared/traindata (+ routing/learned/examples),
# and the leave-one-source-out report beside the keyword classifier (a few minutes each).
train-router: install
	$(PY) manage.py train_router

eval-router: install
	$(PY) -m routing.learned.evaluation
