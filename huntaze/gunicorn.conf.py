"""Production server: gunicorn managing uvicorn workers (ASGI, one event loop per process).

    gunicorn -c huntaze/gunicorn.conf.py huntaze.asgi:application    (or `make serve-prod`)

Like settings.py, this file reads the environment (see .env.example): WEB_CONCURRENCY worker
processes (about one per core: each worker is one event loop; blocking work runs in its
thread pool), BIND, GUNICORN_KEEPALIVE_S, GUNICORN_TIMEOUT_S, GUNICORN_GRACEFUL_TIMEOUT_S and
GUNICORN_ACCESS_LOG ("-" for stdout; off by default, the ledger already has every call) and
GUNICORN_REUSE_PORT (on by default: one listening socket per worker, balanced by the kernel).
"""

import gc
import os
import shutil
from pathlib import Path

wsgi_app = "huntaze.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
bind = os.environ.get("BIND", "127.0.0.1:8000").split(",")
backlog = 2048
# Each worker binds a socket of its own (SO_REUSEPORT) and the kernel spreads new connections
# across them by hash. With one shared socket, whichever event loop wakes first accepts every
# pending connection, and one worker can end up with two thirds of them while the other idles.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "true").lower() in ("1", "true", "yes")
# Idle keep-alive connections are cheap for an event loop; a proxy or SDK in front reuses them.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE_S", "75"))
# A worker that does not check in for this long is restarted (its requests are swept later).
timeout = int(os.environ.get("GUNICORN_TIMEOUT_S", "120"))
# On SIGTERM / reload, running requests and streams get this long to finish.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT_S", "30"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = "huntaze-router"
# Import the app in each worker after the fork: no database connection, client pool or event
# loop is shared between processes.
preload_app = False


def on_starting(server) -> None:
    """Empty the Prometheus multiprocess directory: it must start clean at every start."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    if path.is_dir():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)


def post_worker_init(worker) -> None:
    """Move everything loaded at start (Django, the app, the SDK) out of the collector's way:
    full collections then walk only what requests allocate, so they no longer add
    milliseconds to a request's tail latency now and then."""
    gc.collect()
    gc.freeze()


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges from the merged /metrics (counters are kept)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
