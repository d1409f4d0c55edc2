"""Fault drill 3: the circuit breaker is shared: once open, neither of two worker processes
sends the broken model a single call during the cooldown."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from django.conf import settings as django_settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(port: int, env: dict) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "huntaze.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603 - our own server


def _worker_env(*, database_port: int | None = None, redis_url: str | None = None, **extra) -> dict:
    """A worker process's environment: the test database (through a drill's proxy when
    `database_port` is given), Redis (`redis_url`, else the test's), the test's HTTP upstream
    in live mode, and `extra` settings."""
    db = connection.settings_dict
    host, port = ("127.0.0.1", database_port) if database_port else (db["HOST"], db["PORT"])
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{host}:{port}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL if redis_url is None else redis_url,
        "UPSTREAM_MODE": "live",
        "OPENAI_BASE_URL": django_settings.OPENAI_BASE_URL,
        "OPENAI_API_KEY": "sk-test-not-real",
        **{name: str(value) for name, value in extra.items()},
    }


def _wait(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"worker on {port} did not start")


def test_drill_3_open_circuit_is_respected_by_every_worker(
    policy, api_key, sandbox_state, http_upstream
):
    if not django_settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("needs a cache and a database that two processes share (Redis, PostgreSQL)")
    env = _worker_env(
        ROUTER_ATTEMPTS_PER_MODEL=1, CIRCUIT_FAILURE_THRESHOLD=3, CIRCUIT_COOLDOWN_S=60
    )
    ports = [_free_port(), _free_port()]
    workers = [_worker(port, env) for port in ports]
    try:
        for port in ports:
            _wait(port)
        # given the premium model failing every call; legal has no fallback
        sandbox_state.fail_randomly(1.0, ("500",))
        body = {"messages": [{"role": "user", "content": "review this"}], "category": "legal"}
        headers = {"Authorization": f"Bearer {api_key[1]}"}
        with httpx2.Client(timeout=10) as http:
            # when both workers see failures until the breaker opens
            for n in range(4):
                http.post(
                    f"http://127.0.0.1:{ports[n % 2]}/api/v1/completions",
                    json=body,
                    headers=headers,
                )
            calls_at_open = sandbox_state.calls_by_model.get("gpt-4o", 0)
            time.sleep(1.1)  # past each worker's one-second local view of a closed circuit
            statuses = [
                http.post(
                    f"http://127.0.0.1:{ports[n % 2]}/api/v1/completions",
                    json=body,
                    headers=headers,
                ).status_code
                for n in range(10)
            ]
        # then no call reached the broken model from either worker during the cooldown
        calls_after = sandbox_state.calls_by_model.get("gpt-4o", 0) - calls_at_open
        print(
            f"\ndrill 3: breaker open after {calls_at_open} failures; {calls_after} calls "
            f"to the broken model from 2 workers during the cooldown; answers {statuses}"
        )
        assert calls_at_open >= 3
        assert calls_after == 0
        assert statuses == [502] * 10
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=10)
