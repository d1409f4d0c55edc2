"""A batch job end to end through a real Celery worker (with its beat) on the machine's Redis.

The worker is a separate process on the test's own database and on the sandbox upstream's
HTTP server (in this process, so the test holds the provider's knobs). It is killed while
the provider still works on the batch and started again: the batch resumes from the
database. Skips when Redis is not reachable on 127.0.0.1:6379.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from routing.models import BatchJob, FeatureFlag, ProviderBatch
from routing.policy_versions import policy_version_create
from routing.providers import sandbox_batches
from usage.models import UsageRecord

BROKER_URL = "redis://127.0.0.1:6379/14"  # a database of its own, flushed by this test
BASE_DIR = Path(django_settings.BASE_DIR)


def _redis_or_skip():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379 for the real-worker test")
    return client


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait(condition, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


class Worker:
    """`celery -A huntaze worker -B` (solo pool) as a child process, its log in a file."""

    def __init__(self, env: dict, tmp_path: Path) -> None:
        self.env, self.tmp_path, self.process, self.starts = env, tmp_path, None, 0

    def start(self) -> None:
        self.starts += 1
        log = self.tmp_path / f"worker-{self.starts}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "huntaze", "worker", "-B",
            "--pool", "solo", "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"batch-test-{os.getpid()}@%h",
            "-s", str(self.tmp_path / "beat-schedule"),
        ]  # fmt: skip
        self.log = log
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            cwd=BASE_DIR,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            # A group of its own: -B forks the beat as a child, which must die with the worker.
            start_new_session=True,
        )
        _wait(
            lambda: b"ready." in log.read_bytes() or self.process.poll() is not None,
            timeout_s=30,
            what="the worker to start",
        )
        assert self.process.poll() is None, log.read_text()[-3000:]

    def kill(self) -> None:
        """SIGKILL to the worker and its beat together: a crash, no warm shutdown."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group is already gone
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever of the group outlived a warm shutdown (the beat)


def _pools_reset(app) -> None:
    # The connection and producer pools were made for the old broker URL.
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(settings):
    """This process sends its tasks to Redis too (not eager), and puts it back after."""
    from huntaze.celery import app

    client = _redis_or_skip()
    client.flushdb()
    before = {
        "broker_url": app.conf.broker_url,
        "task_always_eager": app.conf.task_always_eager,
    }
    app.conf.update(broker_url=BROKER_URL, task_always_eager=False)
    _pools_reset(app)
    yield BROKER_URL
    app.conf.update(**before)
    _pools_reset(app)
    client.flushdb()


@pytest.fixture
def worker(transactional_db, broker, http_upstream, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "UPSTREAM_MODE": "live",
        "OPENAI_BASE_URL": django_settings.OPENAI_BASE_URL,
        "OPENAI_API_KEY": "sk-test-not-real",
        "BATCH_TICK_S": "0.5",
        "BATCH_POLL_INTERVAL_S": "0.3",
        "BATCH_SUBMIT_RETRY_S": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    worker = Worker(env, tmp_path)
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def _batch_sandbox():
    sandbox_batches.batches.reset()
    yield
    sandbox_batches.batches.reset()


def test_batch_round_trip_with_a_real_worker_survives_a_worker_crash(worker, policy, api_client):
    # given the batch feature on, a provider that holds the batch and fails item "b"
    FeatureFlag.objects.filter(name="batch").update(enabled=True)
    policy_version_create(actor="test", comment="batch on")
    sandbox_batches.batches.hold = True
    sandbox_batches.batches.fail_ids = {"b"}
    worker.start()
    requests = [
        {
            "custom_id": cid,
            "category": "analytics",
            "messages": [{"role": "user", "content": f"Summarise the week for segment {cid}"}],
        }
        for cid in ("a", "b", "c")
    ]
    # when the job is posted, submitted by the worker and polled by its beat
    response = api_client.post(
        "/api/v1/batches", data=json.dumps({"requests": requests}), content_type="application/json"
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    part = ProviderBatch.objects.get(job__public_id=job_id)
    _wait(
        lambda: ProviderBatch.objects.filter(pk=part.pk, poll_count__gte=2).exists(),
        timeout_s=20,
        what="the worker to submit and poll the batch",
    )
    # and the worker dies while the provider still works on it
    worker.kill()
    assert BatchJob.objects.get(public_id=job_id).status == "in_progress"
    assert UsageRecord.objects.count() == 0
    sandbox_batches.batches.hold = False
    worker.start()
    _wait(
        lambda: BatchJob.objects.get(public_id=job_id).completed_at is not None,
        timeout_s=30,
        what="the restarted worker to collect the batch",
    )
    # then the results are mapped back, the failed item is visible, each item has one row
    body = api_client.get(f"/api/v1/batches/{job_id}").json()
    assert body["status"] == "completed"
    statuses = {r["custom_id"]: r["status"] for r in body["results"]}
    assert statuses == {"a": "succeeded", "b": "failed", "c": "succeeded"}
    assert body["results"][0]["content"].startswith("[sandbox gpt-4o-mini]")
    rows = UsageRecord.objects.filter(request_id__in=[r["request_id"] for r in body["results"]])
    assert rows.count() == 3 == UsageRecord.objects.count()
    assert all(row.batch for row in rows)
    assert sorted(rows.values_list("status", flat=True)) == ["ok", "ok", "upstream_error"]
    assert sandbox_batches.batches.creates == 1  # the restart did not submit it again
    assert ProviderBatch.objects.get(pk=part.pk).state == "collected"
