"""What the benchmark scripts share: free loopback ports, waiting for a server, manage.py, and
how fast this machine runs Python right now."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, process: subprocess.Popen | None = None, timeout_s: float = 30
) -> None:
    """Return once 127.0.0.1:port accepts connections; exit if the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"process {process.args[:3]} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def manage(env: dict, *args: str, tree: Path = ROOT) -> str:
    """Run a manage.py command of this project (or of the checkout `tree`); return what it
    printed."""
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [PYTHON, "manage.py", *args], cwd=tree, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


_PROBE_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi."}]}


def host_speed() -> str:
    """Time a fixed pure-Python workload (JSON and strings, as in a request) 15 times; return
    "median ms (best ms)". Cloud VMs of one type differ from host to host and hour to hour
    (this repo's figures were taken on hosts almost 2x apart): printed beside a run's
    figures, it tells a slower host from a slower build. Lower is faster."""
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        for n in range(2000):
            data = json.loads(json.dumps({**_PROBE_BODY, "n": n}))
            ",".join([f"{key}={value}" for key, value in data.items()])
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return f"{timings[len(timings) // 2]:.1f} ms (best {timings[0]:.1f} ms)"
