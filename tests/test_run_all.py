"""`make run` as a newcomer meets it: scripts/run_all.py (what `make run` starts) on free ports,
a database and state folder of its own, and none of the test run's variables (no Redis, no
broker, no tokenizer path).

- The official SDK answers, an operator's change made by another process reaches the web
  server, a batch is completed by the worker against the one shared sandbox, the beat's rollups
  show the traffic, and SIGINT (Ctrl-C) leaves no process behind.
- The issue's "done when", in a real browser (Debian's chromium): a staff user logs in to admin,
  the dashboard shows the SDK's traffic within a minute without a reload (the beat's rollups),
  a batch switched on and posted as the README says completes, and after a shadow run of
  `manage.py simulate` from a shell the dashboard and the matrix show a quality alert.

Each starts its own product and always stops it; every wait is bounded. About 40 s and 60 s
on this 2-core host. `pytest -m make_run` selects them; `make test` runs them.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import openai
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.make_run
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


def _manage(env: dict, *args: str, timeout_s: float = 30) -> str:
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stderr[-3000:]}"
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


@dataclass
class Product:
    """A running `make run`, and once stopped, how it stopped."""

    base: str
    env: dict  # what it was started with: a shell's, as a newcomer's second terminal has
    log: Path
    ports: tuple[int, int]  # web, sandbox
    returncode: int | None = None
    pids: list[int] = field(default_factory=list)  # the processes honcho started
    left: list[int] = field(default_factory=list)  # those still there after Ctrl-C

    def wait_ready(self, *, deadline: float) -> None:
        _until(
            lambda: "Uvicorn running" in self.log.read_text() and " ready." in self.log.read_text(),
            deadline=deadline,
            what="web server and worker",
            log=self.log,
        )


@contextmanager
def _make_run(tmp_path: Path, **settings: str) -> Iterator[Product]:
    """Start scripts/run_all.py on free ports with a database and state of its own; yield once
    its banner is out (the database is ready); always stop it with SIGINT, as Ctrl-C does, and
    kill whatever is left."""
    port, sandbox_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SHARED_STATE_DIR=str(tmp_path / "var"),
        **settings,
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
    product = Product(f"http://127.0.0.1:{port}", env, log, (port, sandbox_port))
    try:
        banner = time.monotonic() + 60
        _until(lambda: "Ctrl-C stops" in log.read_text(), deadline=banner, what="banner", log=log)
        yield product
    finally:
        supervisor.send_signal(signal.SIGINT)
        try:
            product.returncode = supervisor.wait(timeout=30)
        finally:
            product.pids = [int(p) for p in re.findall(r"started \(pid=(\d+)\)", log.read_text())]
            product.left = [pid for pid in product.pids if not _gone(pid)]
            for pid in product.left:
                os.killpg(pid, signal.SIGKILL)
            if supervisor.poll() is None:
                os.killpg(supervisor.pid, signal.SIGKILL)


# Ticks of seconds instead of minutes, so the bounds hold.
QUICK_TICKS = {"BATCH_TICK_S": "1", "BATCH_POLL_INTERVAL_S": "0.5", "ROLLUP_TICK_S": "2"}
BATCH = {
    "requests": [
        {
            "custom_id": f"wk-{n}",
            "category": "analytics",
            "messages": [{"role": "user", "content": f"Summarise week {n} of sales"}],
        }
        for n in (1, 2)
    ]
}


def _batch_done(client: httpx2.Client, job_id: str):
    job = client.get(f"/api/v1/batches/{job_id}").json()
    return job["status"] not in ("queued", "in_progress") and job


def test_make_run_starts_the_whole_product_and_ctrl_c_stops_it(tmp_path):
    # given the supervisor on free ports, with a database and state of its own
    with _make_run(tmp_path, **QUICK_TICKS) as product:
        deadline = time.monotonic() + 60
        env, log = product.env, product.log
        # A key as the banner says, made while the processes start (the database is ready).
        key = _manage(env, "create_api_key", "newcomer").strip().splitlines()[-1]
        product.wait_ready(deadline=deadline)
        client = httpx2.Client(
            base_url=product.base, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )

        # when the official SDK asks for a completion
        sdk = openai.OpenAI(base_url=f"{product.base}/v1", api_key=key, max_retries=0)
        answer = sdk.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Write a caption for my photo"}]
        )
        # and an operator switches batch jobs on from another process (as admin would)
        _manage(env, "shell", "-c", ENABLE_BATCHES)
        created = _until(
            lambda: (r := client.post("/api/v1/batches", json=BATCH)).status_code == 202 and r,
            deadline=deadline,
            what="batch accepted (the flag reaching the web server)",
            log=log,
        )
        job_id = created.json()["id"]

        # then the SDK got an answer, counted with the tokenizer the settings found
        assert answer.choices[0].message.content
        route = client.post("/api/v1/route", json={"messages": BATCH["requests"][0]["messages"]})
        assert route.json()["token_source"] == "tiktoken"
        # the worker completes the batch against the same sandbox
        job = _until(
            lambda: _batch_done(client, job_id),
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
        # when Ctrl-C comes (leaving the block)

    # then everything stopped, cleanly, and nothing listens any more
    assert product.returncode == 0, log.read_text()[-3000:]
    assert len(product.pids) == 4 and not product.left, log.read_text()[-3000:]
    for listening in product.ports:
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", listening))


def _metric(driver, name: str) -> str:
    return driver.find_element("css selector", f'[data-metric="{name}"]').text


def test_first_hour_in_a_browser_traffic_on_the_dashboard_a_batch_and_a_quality_alert(
    tmp_path, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # given `make run` (the page polling every 2 s instead of 15), a key and a staff user
    # made from a second shell as the README shows
    ticks = {**QUICK_TICKS, "DASHBOARD_REFRESH_S": "2"}
    with _make_run(tmp_path, **ticks) as product:
        env, log, base = product.env, product.log, product.base
        key = _manage(env, "create_api_key", "newcomer").strip().splitlines()[-1]
        staff = {**env, "DJANGO_SUPERUSER_PASSWORD": "a-newcomer-password"}
        _manage(staff, "createsuperuser", "--noinput", "--username", "ops", "--email", "o@x.io")
        product.wait_ready(deadline=time.monotonic() + 60)
        wait = WebDriverWait(browser, 30)

        # when the staff user logs in to admin and opens the dashboard
        browser.get(f"{base}/dashboard/?window=today")
        browser.find_element(By.ID, "id_username").send_keys("ops")
        browser.find_element(By.ID, "id_password").send_keys("a-newcomer-password")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait.until(lambda d: d.execute_script("return document.body.dataset.chartsReady"))
        assert _metric(browser, "requests") == "0"
        # and three completions come through the official SDK
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        for text in ("Write a caption for my photo", "Hi! How was your day?", "Is this spam?"):
            sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": text}])

        # then the open page shows them within a minute, with no reload: the beat's rollups,
        # read by the page's poll
        browser.execute_script("window.__sameDocument = true;")
        WebDriverWait(browser, 60).until(lambda d: _metric(d, "requests") == "3")
        assert browser.execute_script("return window.__sameDocument") is True

        # when the staff user switches batch jobs on in admin (off in a fresh install) and a
        # batch is posted to the API
        browser.get(f"{base}/admin/routing/featureflag/")
        batch_row = "//tr[.//th//a[normalize-space()='Batch']]"  # the flag's label
        browser.find_element(By.XPATH, f"{batch_row}//input[contains(@name, '-enabled')]").click()
        browser.find_element(By.NAME, "_save").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".messagelist .success"))
        on_for = f"{batch_row}//td[contains(@class, 'field-on_for')]"
        assert browser.find_element(By.XPATH, on_for).text == "everyone"
        client = httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        deadline = time.monotonic() + 60
        created = _until(
            lambda: (r := client.post("/api/v1/batches", json=BATCH)).status_code == 202 and r,
            deadline=deadline,
            what="batch accepted (the admin's change reaching the web server)",
            log=log,
        )
        job_id = created.json()["id"]
        # then the worker completes it, and admin lists it so
        job = _until(
            lambda: _batch_done(client, job_id), deadline=deadline, what="batch done", log=log
        )
        client.close()
        assert job["status"] == "completed", job
        browser.get(f"{base}/admin/routing/batchjob/?q={job_id}")
        (row,) = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        cells = {
            name: row.find_element(By.CSS_SELECTOR, f".field-{name}").text
            for name in ("public_id", "status", "succeeded", "failed")
        }
        assert cells == {
            "public_id": job_id,
            "status": "Completed",
            "succeeded": "2",
            "failed": "0",
        }

        # when a shadow run is simulated from a shell against the same database: every cheap
        # answer judged, so the synthetic verdicts, and the alert, are the same on every run
        printed = _manage(
            env, "simulate", "--requests", "400", "--shadow-percent", "100", timeout_s=120
        )
        alerted = [line.split()[0] for line in printed.splitlines() if "BELOW FLOOR" in line]
        assert "marketing" in alerted, printed

        # then the dashboard and the decision matrix show the quality alert
        browser.get(f"{base}/dashboard/?window=today")
        alerts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".quality-alert")]
        assert any(a.startswith("Quality alert: marketing keeps") for a in alerts), alerts
        browser.get(f"{base}/admin/routing/taskcategory/")
        warnings = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".messagelist .warning")]
        assert any(w.startswith("Quality alert: marketing keeps") for w in warnings), warnings
