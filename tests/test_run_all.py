"""`make run` as a newcomer meets it: scripts/run_all.py (what `make run` starts) on free ports,
a database and state folder of its own, and none of the test run's variables (no Redis, no
broker, no tokenizer path). The official SDK answers, an operator's change made by another
process reaches the web server, a batch is completed by the worker against the one shared
sandbox, the beat's rollups show the traffic, and SIGINT (Ctrl-C) leaves no process behind.
Bounded: about 30 s here, 60 s at most.
"""

import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import openai
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The test run's own settings, which `make run` on a laptop does not have.
NOT_INHERITED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CACHE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CELERY_TASK_ALWAYS_EAGER",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "UPSTREAM_MODE",
    "SANDBOX_URL",
    "TIKTOKEN_CACHE_DIR",
    "DJANGO_SETTINGS_MODULE",
)
ENABLE_BATCHES = (
    "from routing.models import FeatureFlag\n"
    "from routing.policy_versions import policy_version_create\n"
    "FeatureFlag.objects.filter(name='batch').update(enabled=True, percent=None)\n"
    "policy_version_create(actor='ops', comment='batch jobs on')\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(condition, *, deadline: float, what: str, log: Path):
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} in time; log:\n{log.read_text()[-4000:]}")


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def _gone(pid: int) -> bool:
    """True when no process is left in the group `pid` led (honcho starts each in its own)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _month_total_requests(client: httpx2.Client) -> int:
    month = datetime.now(UTC).strftime("%Y-%m")
    response = client.get(f"/api/v1/reports/monthly/{month}.csv")
    assert response.status_code == 200, response.text
    rows = csv.DictReader(io.StringIO(response.text))
    return next(int(row["requests"]) for row in rows if row["section"] == "total")


def test_make_run_starts_the_whole_product_and_ctrl_c_stops_it(tmp_path):
    # given the supervisor on free ports, with a database and state of its own
    port, sandbox_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SHARED_STATE_DIR=str(tmp_path / "var"),
        # Ticks of seconds instead of minutes, so the bound holds.
        BATCH_TICK_S="1",
        BATCH_POLL_INTERVAL_S="0.5",
        ROLLUP_TICK_S="2",
    )
    log = tmp_path / "run.log"
    command = [sys.executable, "scripts/run_all.py", "--port", str(port)]
    command += ["--sandbox-port", str(sandbox_port)]
    supervisor = subprocess.Popen(  # noqa: S603 - our own script
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # as a terminal's Ctrl-C reaches it: the supervisor alone
    )
    deadline = time.monotonic() + 60
    base = f"http://127.0.0.1:{port}"
    try:
        # A key as the banner says, made while the processes start (the database is ready).
        _until(lambda: "Ctrl-C stops" in log.read_text(), deadline=deadline, what="banner", log=log)
        key = _manage(env, "create_api_key", "newcomer").strip().splitlines()[-1]
        _until(
            lambda: "Uvicorn running" in log.read_text() and " ready." in log.read_text(),
            deadline=deadline,
            what="web server and worker",
            log=log,
        )
        client = httpx2.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )

        # when the official SDK asks for a completion
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        answer = sdk.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Write a caption for my photo"}]
        )
        # and an operator switches batch jobs on from another process (as admin would)
        _manage(env, "shell", "-c", ENABLE_BATCHES)
        batch = {
            "requests": [
                {
                    "custom_id": f"wk-{n}",
                    "category": "analytics",
                    "messages": [{"role": "user", "content": f"Summarise week {n} of sales"}],
                }
                for n in (1, 2)
            ]
        }
        created = _until(
            lambda: (r := client.post("/api/v1/batches", json=batch)).status_code == 202 and r,
            deadline=deadline,
            what="batch accepted (the flag reaching the web server)",
            log=log,
        )
        job_id = created.json()["id"]

        # then the SDK got an answer, counted with the tokenizer the settings found
        assert answer.choices[0].message.content
        route = client.post("/api/v1/route", json={"messages": batch["requests"][0]["messages"]})
        assert route.json()["token_source"] == "tiktoken"
        # the worker completes the batch against the same sandbox
        job = _until(
            lambda: (
                (j := client.get(f"/api/v1/batches/{job_id}").json())["status"]
                not in ("queued", "in_progress")
                and j
            ),
            deadline=deadline,
            what="batch completed by the worker",
            log=log,
        )
        assert job["status"] == "completed", job
        assert job["request_counts"]["succeeded"] == 2
        # and the beat's rollups put all three requests in the month's report
        _until(
            lambda: _month_total_requests(client) == 3,
            deadline=deadline,
            what="rollups with the three requests",
            log=log,
        )
        client.close()
    finally:
        # when Ctrl-C comes
        supervisor.send_signal(signal.SIGINT)
        try:
            returncode = supervisor.wait(timeout=30)
        finally:
            pids = [int(p) for p in re.findall(r"started \(pid=(\d+)\)", log.read_text())]
            left = [pid for pid in pids if not _gone(pid)]
            for pid in left:
                os.killpg(pid, signal.SIGKILL)
            if supervisor.poll() is None:
                os.killpg(supervisor.pid, signal.SIGKILL)

    # then everything stopped, cleanly, and nothing listens any more
    assert returncode == 0, log.read_text()[-3000:]
    assert len(pids) == 4 and not left, log.read_text()[-3000:]
    for listening in (port, sandbox_port):
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", listening))
