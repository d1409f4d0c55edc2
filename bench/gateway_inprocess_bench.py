"""CPU of one request through the whole ASGI application, in-process and without the HTTP
server: this tree against a baseline checkout, interleaved round by round.

Each tree runs in a process of its own (its code, its Django) that sends sequential requests
to `huntaze.asgi.application` as ASGI events: the body ../shared/bench/chat_post.lua sends,
then the disconnect once the answer is out, as uvicorn reports it. The after-response work
(the ledger row) is part of each request. It prints the process's CPU per request (every
thread: the event loop and the database threads) and the wall time. No wrk, uvicorn or
gunicorn in the figures, so a change of our own shows with less noise than in
gateway_bench.py. A benchmark: prints figures, asserts nothing but that every answer is a 200.

On a host whose speed comes and goes (a shared machine: the same code's CPU per request was
seen to triple for minutes at a time), `--instructions` counts instead the machine
instructions per request, under valgrind's callgrind (Debian's valgrind), instrumenting only
while the measured requests run: repeatable to about 1 % whatever the host is doing, though it
leaves out the time spent in the kernel and the cost of cache misses.

It needs what `gateway_bench.py --hold` leaves up, the migrated database with its key, the
stub upstream and Redis:

    .venv/bin/python bench/gateway_bench.py --workers 1 --hold 3000 &   # prints key and stub
    .venv/bin/python bench/gateway_inprocess_bench.py --baseline-tree ../main-wt \\
        --database-url postgres://postgres@127.0.0.1:5432/bench_gateway_<pid> \\
        --stub-port <port> --key <key> [--stream] [--requests 400] [--rounds 8] \\
        [--instructions]   # machine instructions a request instead (~25 s to start each tree)
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve(tree: Path, key: str, stream: bool) -> None:
    """Worker: load the tree's application, then for each N read from stdin run N requests
    and print "CPU-us wall-us" per request."""
    sys.path.insert(0, str(tree))
    os.chdir(tree)
    import uvloop

    from huntaze.asgi import application

    ask = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello in five words."},
        ],
        "max_tokens": 16,
        "temperature": 0,
    }
    if stream:
        ask.update(stream=True, stream_options={"include_usage": True})
    body = json.dumps(ask, separators=(",", ":")).encode()
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer " + key.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def request() -> int:
        answered = asyncio.Event()
        state = {"body_sent": False, "status": 0}

        async def receive() -> dict:
            if not state["body_sent"]:
                state["body_sent"] = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        await application({**scope, "state": {}}, receive, send)
        return state["status"]

    async def main() -> None:
        for _ in range(50):  # warm: the router model, connections, caches
            status = await request()
            if status != 200:
                raise SystemExit(f"warm-up request answered {status}")
        print("ready", flush=True)
        for line in sys.stdin:
            n = int(line)
            cpu, wall = time.process_time(), time.perf_counter()
            statuses = [await request() for _ in range(n)]
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if statuses.count(200) != n:
                raise SystemExit(f"not every answer was a 200: {sorted(set(statuses))}")
            print(f"{1e6 * cpu / n:.1f} {1e6 * wall / n:.1f}", flush=True)

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree")
    parser.add_argument("--database-url")
    parser.add_argument("--stub-port", type=int)
    parser.add_argument("--key", required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--requests", type=int, default=400, help="per round and tree")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count machine instructions a request under callgrind (use --requests 50 or so)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(Path(args.serve), args.key, args.stream)
    if not (args.baseline_tree and args.database_url and args.stub_port):
        parser.error("--baseline-tree, --database-url and --stub-port are needed")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "huntaze.settings",
        "DATABASE_URL": args.database_url,
        "CONN_MAX_AGE": "0",
        "REDIS_URL": args.redis_url,
        "CACHE_URL": args.redis_url.replace("redis://", "rediscache://"),
        "CELERY_BROKER_URL": "memory://",
        "UPSTREAM_MODE": "live",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{args.stub_port}/v1",
        "OPENAI_API_KEY": "sk-bench-not-real",
        "UPSTREAM_MAX_RETRIES": "0",
        "ROUTER_ATTEMPTS_PER_MODEL": "1",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    env.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
    trees = {"base": Path(args.baseline_tree).resolve(), "this": ROOT}
    workers = {}
    counts = Path(tempfile.mkdtemp(prefix="inprocess-callgrind-"))
    for name, tree in trees.items():
        command = [sys.executable, __file__, "--serve", str(tree), "--key", args.key]
        if args.instructions:  # instrumented only while measured: see measure_instructions
            out_file = f"--callgrind-out-file={counts}/{name}"
            command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", out_file, *command]
        workers[name] = subprocess.Popen(
            [*command, *(["--stream"] if args.stream else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    try:
        for name, worker in workers.items():
            if worker.stdout.readline().strip() != "ready":
                raise SystemExit(f"{name}: the worker did not start")
        per_request = {name: [] for name in trees}  # CPU us or instructions, by round
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
            for name in order:
                worker = workers[name]
                if args.instructions:
                    figure = measure_instructions(worker, args.requests, counts / name)
                    print(
                        f"round {round_} {name}: {figure / 1e3:.0f} thousand instructions a request"
                    )
                else:
                    figure, wall_us = measure_cpu(worker, args.requests)
                    print(
                        f"round {round_} {name}: {figure:.0f} us CPU, {wall_us:.0f} us wall "
                        "a request"
                    )
                per_request[name].append(figure)
        unit = "instructions" if args.instructions else "us CPU"
        for name, figures in per_request.items():
            print(
                f"{name}: {unit} per request best {min(figures):.0f}, "
                f"median {statistics.median(figures):.0f} ({args.rounds} rounds)"
            )
        if args.instructions:
            base, this = (statistics.median(per_request[name]) for name in ("base", "this"))
            print(f"this / base: {this / base:.3f}")
    finally:
        for worker in workers.values():
            worker.stdin.close()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        shutil.rmtree(counts, ignore_errors=True)


def measure_cpu(worker: subprocess.Popen, requests: int) -> tuple[float, float]:
    """Run the requests; return the worker's CPU and wall microseconds a request."""
    worker.stdin.write(f"{requests}\n")
    worker.stdin.flush()
    cpu_us, wall_us = map(float, worker.stdout.readline().split())
    return cpu_us, wall_us


def measure_instructions(worker: subprocess.Popen, requests: int, out_file: Path) -> float:
    """Run the requests with callgrind counting (every thread); return instructions a request.

    Counting is switched on, zeroed, the requests run, the counts dumped and counting switched
    off again, so a round counts its own requests and nothing of the start or the others."""
    pid = str(worker.pid)
    for command in ("--instr=on", "--zero"):
        subprocess.run(["callgrind_control", command, pid], check=True, capture_output=True)
    measure_cpu(worker, requests)
    before = set(out_file.parent.glob(f"{out_file.name}.*"))
    subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "--instr=off", pid], check=True, capture_output=True)
    (dump,) = set(out_file.parent.glob(f"{out_file.name}.*")) - before
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1]) / requests
    raise SystemExit(f"{dump}: no totals line")


if __name__ == "__main__":
    main()
