"""`make run`: the whole product on this machine, with no service to install.

    .venv/bin/python scripts/run_all.py [--host 127.0.0.1] [--port 8000] [--sandbox-port 8765]

Prepares the database (migrate, seed_policy, collectstatic), then runs these under honcho (a
Procfile runner: one prefixed log, and when one process stops or Ctrl-C comes, all stop):

  web      uvicorn huntaze.asgi:application on HOST:PORT: the API, admin, dashboard
  worker   celery worker: batch jobs, shadow evaluations and what the beat sends
  beat     celery beat: dashboard rollups (every ROLLUP_TICK_S), batch sweeps, purges
  sandbox  python -m routing.providers.sandbox: the one upstream that web and worker call

Without Redis they share state as production's processes do through it, in SHARED_STATE_DIR
(default var/): the file cache (policy version, flags, response cache, breaker) and the
Celery broker's queue (kombu's filesystem transport). A REDIS_URL or CELERY_BROKER_URL that
is set is used instead; with a provider key or OPENAI_BASE_URL (live mode) no sandbox starts.
"""

import argparse
import os
import shlex
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STOPPED_BY_SIGNAL = (130, 143)  # honcho's return codes after SIGINT and SIGTERM
STOP_WAIT_S = 15  # from SIGTERM to SIGKILL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare() -> None:
    """Migrate, seed the default policy (once) and collect static files, in this process:
    one Django start-up instead of three."""
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)
    call_command("seed_policy")
    call_command("collectstatic", interactive=False, verbosity=0)
    connections.close_all()  # the children open their own


def processes(*, host: str, port: int, sandbox_port: int) -> tuple[dict[str, list[str]], dict]:
    """Return each process's command line, and the environment they all get."""
    from django.conf import settings

    python = sys.executable
    state = Path(settings.SHARED_STATE_DIR)
    state.mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [python, "-m", "uvicorn", "huntaze.asgi:application"]
        + ["--host", host, "--port", str(port)],
        "worker": [python, "-m", "celery", "-A", "huntaze", "worker", "--loglevel", "INFO"]
        + ["--concurrency", "2", "-n", f"run-{port}@%h"]
        # Nothing here listens for gossip, heartbeats or start-up syncs: they would only add
        # files to the broker's folder.
        + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
        "beat": [python, "-m", "celery", "-A", "huntaze", "beat", "--loglevel", "INFO"]
        + ["-s", str(state / "celerybeat-schedule")],
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if settings.UPSTREAM_MODE == "sandbox":
        commands["sandbox"] = [
            python,
            "-m",
            "routing.providers.sandbox",
            "--port",
            str(sandbox_port),
        ]
        commands["sandbox"] += ["--latency-ms", str(settings.SANDBOX_LATENCY_MS)]
        env["SANDBOX_URL"] = f"http://127.0.0.1:{sandbox_port}/v1"
    return commands, env


def banner(*, host: str, port: int, commands: dict, env: dict) -> str:
    from django.conf import settings

    base = f"http://{host}:{port}"
    cache = settings.CACHES["default"]
    shared = cache.get("LOCATION") if "filebased" in cache["BACKEND"] else cache["BACKEND"]
    broker = settings.CELERY_BROKER_URL.split("@")[-1]  # no password in the log
    lines = [
        "Huntaze router: every process on this machine (Ctrl-C stops them all)",
        f"  web      {base}/  API {base}/v1/ and {base}/api/v1/, admin {base}/admin/,",
        f"           dashboard {base}/dashboard/, API docs {base}/api/docs/",
        f"  worker   celery worker, broker {broker}",
        f"  beat     celery beat, dashboard rollups every {settings.ROLLUP_TICK_S:g} s",
    ]
    if "sandbox" in commands:
        lines.append(f"  sandbox  {env['SANDBOX_URL']} (offline upstream, shared by all)")
    else:
        lines.append(f"  upstream live: {settings.OPENAI_BASE_URL or 'OpenAI'}")
    lines.append(f"  shared   cache {shared}, database {settings.DATABASES['default']['NAME']}")
    lines.append(f"A key: {sys.executable} manage.py create_api_key my-app")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="the web server's")
    parser.add_argument("--sandbox-port", type=int, default=8765, help="0: a free one")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "huntaze.settings")
    # A worker of its own, so tasks are queued, not run eagerly in the web server.
    os.environ.setdefault("CELERY_BROKER_URL", "filesystem://localhost//")

    import django
    import honcho.manager

    django.setup()
    prepare()
    sandbox_port = args.sandbox_port or free_port()
    commands, env = processes(host=args.host, port=args.port, sandbox_port=sandbox_port)
    print(banner(host=args.host, port=args.port, commands=commands, env=env), flush=True)
    # A Celery worker's warm shutdown takes 4-6 s here (its loop polls the filesystem broker
    # for 2 s); honcho's default of 5 s before SIGKILL would cut some short.
    honcho.manager.KILL_WAIT = STOP_WAIT_S
    manager = honcho.manager.Manager()
    for name, command in commands.items():
        # exec: honcho signals the process itself (and its group), not a shell around it
        manager.add_process(name, "exec " + shlex.join(command), env=env, cwd=str(ROOT))
    manager.loop()  # returns once every process has stopped
    return 0 if manager.returncode in STOPPED_BY_SIGNAL else manager.returncode


if __name__ == "__main__":
    sys.exit(main())
