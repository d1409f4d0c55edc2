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

.PHONY: install run test lint simulate bench-engine bench-dashboard bench-ttfb

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

bench-engine: install
	$(PY) bench/engine_bench.py

# 1M ledger rows in a throw-away PostgreSQL database (BENCH_PG_URL names the server).
bench-dashboard: install
	$(PY) bench/dashboard_bench.py

bench-ttfb: install
	$(PY) bench/ttfb_bench.py
