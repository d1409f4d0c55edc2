"""Deploy settings, checked the way an operator meets them: `manage.py` in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "DATABASE_URL": "postgres://router@127.0.0.1:5432/router",
    "ALLOWED_HOSTS": "router.example.com",
    "OPENAI_API_KEY": "sk-not-a-real-key",
}


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "DEBUG"}
    return subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_its_secrets():
    done = _manage({"ENVIRONMENT": "production"}, "check")
    assert done.returncode != 0
    assert "production needs these settings: SECRET_KEY, DATABASE_URL, ALLOWED_HOSTS" in (
        done.stderr
    )
    assert "OPENAI_API_KEY or OPENAI_BASE_URL" in done.stderr


def test_check_deploy_is_clean_with_production_settings():
    done = _manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_every_redis_client_has_short_timeouts_and_no_retries():
    # given a deploy with Redis for the cache, the broker and the results
    env = {
        "REDIS_URL": "redis://127.0.0.1:6379/9",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/2",
        "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/3",
    }
    env.update({"REDIS_SOCKET_TIMEOUT_S": "0.1", "REDIS_CONNECT_TIMEOUT_S": "0.1"})
    code = (
        "import json\n"
        "from huntaze.celery import app\n"
        "from routing.shared_cache import shared_cache, shared_redis\n"
        "def look(pool):\n"
        "    conn = pool.connection_class(**pool.connection_kwargs)  # not connected\n"
        "    return [conn.socket_timeout, conn.socket_connect_timeout, conn.retry.get_retries()]\n"
        "print(json.dumps({\n"
        "    'cache': look(shared_cache()._backend._cache._get_connection_pool(True)),\n"
        "    'redis': look(shared_redis().connection_pool),\n"
        "    'broker': app.conf.broker_transport_options,\n"
        "    'results': [app.conf.redis_socket_timeout, app.conf.redis_socket_connect_timeout],\n"
        "}))\n"
    )
    # when a process reads its settings (nothing connects)
    done = _manage(env, "shell", "-c", code)
    # then each Redis client gives up within its timeout, once
    assert done.returncode == 0, done.stderr
    clients = json.loads(done.stdout.splitlines()[-1])
    assert clients["cache"] == [0.1, 0.1, 0]
    assert clients["redis"] == [0.1, 0.1, 0]
    assert clients["broker"] == {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    assert clients["results"] == [1.0, 1.0]


def _laptop(tmp_path: Path, **env: str) -> dict:
    """A shell on a laptop: no Redis, no cache URL, state in a folder of its own."""
    shared = ("REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER")
    return {
        **{k: v for k, v in os.environ.items() if k not in shared},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SHARED_STATE_DIR": str(tmp_path / "state"),
        **env,
    }


def _run(env: dict, code: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_redis_every_process_of_a_laptop_sees_one_cache(tmp_path, settings):
    # given two processes of one checkout, as the web server and the worker are
    env = _laptop(tmp_path)
    # when one writes a shared value (a policy version number, a breaker state)
    cache = "from routing.shared_cache import shared_cache; cache = shared_cache(); "
    _run(env, cache + "cache.set('version', 7, None)")
    # then the other reads it, from files under SHARED_STATE_DIR
    seen = _run(env, cache + "print(cache.get('version'))")
    assert seen == "7"
    assert any((tmp_path / "state" / "cache").iterdir())
    # and this test run keeps a cache of its own in memory (or the Redis it was given)
    assert "filebased" not in settings.CACHES["default"]["BACKEND"]


def test_make_run_broker_is_a_folder_and_tasks_go_to_the_worker(tmp_path):
    # given `make run`'s broker setting
    env = _laptop(tmp_path, CELERY_BROKER_URL="filesystem://localhost//")
    code = (
        "import json\n"
        "from huntaze.celery import app\n"
        "print(json.dumps([app.conf.task_always_eager, app.conf.broker_transport_options]))\n"
    )
    # when a process reads its Celery settings
    eager, options = json.loads(_run(env, code))
    # then tasks are queued (not run in the caller) as files in the shared state folder
    assert eager is False
    queue = tmp_path / "state" / "broker" / "queue"
    assert options["data_folder_in"] == options["data_folder_out"] == str(queue)
    assert queue.is_dir() and Path(options["control_folder"]).is_dir()


def test_eager_tasks_raise_each_failure_and_log_no_success(tmp_path):
    # given a shell on a laptop, where tasks run in the calling process
    code = (
        "from huntaze.celery import app\n"
        "@app.task(name='demo.fine')\n"
        "def fine():\n"
        "    return 1\n"
        "@app.task(name='demo.broken')\n"
        "def broken():\n"
        "    raise ValueError('broken on purpose')\n"
        "fine.delay(); fine.delay()\n"
        "try:\n"
        "    broken.delay()\n"
        "except ValueError as error:\n"
        "    print('raised to the caller:', error)\n"
    )
    # when two tasks succeed and one fails
    done = subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=_laptop(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # then the failure reaches the caller (the shadow thread logs what reaches it), and
    # nothing is logged for the successes, nor kombu's "No hostname" warning per publish
    assert done.stdout.strip() == "raised to the caller: broken on purpose", done.stderr
    assert done.stderr == ""


def test_the_worker_still_logs_each_task_it_runs(tmp_path):
    # given `make run`'s broker, where a worker runs the tasks
    env = _laptop(tmp_path, CELERY_BROKER_URL="filesystem://localhost//")
    code = "import logging; print(logging.getLogger('celery.app.trace').getEffectiveLevel())"
    # when its processes set up logging
    level = _run(env, code)
    # then the trace logger keeps INFO: "Task ... succeeded" lines in `make run`'s log
    assert level == "20"
