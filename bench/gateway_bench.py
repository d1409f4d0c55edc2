"""Gateway overhead: the router under gunicorn + uvicorn workers against the upstream directly.

Starts the shared stub upstream (../shared/bench/stub_upstream.py) and the router under
gunicorn (huntaze/gunicorn.conf.py) with 1 and 2 workers, in live mode against the stub, on
PostgreSQL (a database of its own, created and dropped here) and Redis (a db number of its
own, flushed before and after), so every request writes its ledger row as in production.
Then drives ../shared/bench/bench.py (wrk) over the direct stub and every router in the same
run: non-streamed and streamed, 0 ms and 50 ms upstream, at 1, 8 and 64 connections, and
prints ../shared/bench/summarize.py's tables (req/s, p50/p90/p99, added latency and throughput
ratio against direct, gateway CPU-ms per request), then the CPU split of each run with the
PostgreSQL backends' CPU per request, and time to first SSE byte (../shared/bench/ttfb.py).

The response cache is switched off (every request must reach the upstream), and the pinned
model names gpt-4o-mini-delay50 / gpt-4o-mini-cd20 get model profiles so they pass through
unchanged. A benchmark: prints figures, asserts nothing. Every process it starts is stopped,
every wait is bounded, everything listens on 127.0.0.1 only.

    .venv/bin/python bench/gateway_bench.py --quick          # CI: proves it works (~2 min)
    .venv/bin/python bench/gateway_bench.py                  # 3 reps x 10 s per point
    .venv/bin/python bench/gateway_bench.py --baseline-tree ../main-worktree   # A/B in one run
    .venv/bin/python bench/gateway_bench.py --baseline-tree ../old --baseline-own-db   # across
                                                              # a schema change: own database
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from statistics import geometric_mean, median
from urllib.parse import urlparse

import psycopg
import redis

# Run as a script: this folder is on sys.path.
from local_processes import free_port, host_speed, manage, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = ROOT.parent / "shared" / "bench"
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DELAY_MODEL = "gpt-4o-mini-delay50"
ERROR_PREFIXES = ("django.", "psycopg.", "redis.", "openai.", "httpx", "OSError", "RuntimeError")
CHUNK_DELAY_MODEL = "gpt-4o-mini-cd20"
# (title tag, stream, forced model): bench.py alternates gpt-4o-mini / gpt-4o without a model.
SCENARIOS = (
    ("", False, None),
    ("", True, None),
    ("delay50", False, DELAY_MODEL),
    ("delay50", True, DELAY_MODEL),
)


def post(url: str, key: str, body: dict, *, timeout_s: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 (loopback URLs only)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def database_create(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stat_ticks(pid: int, *, children: bool = False) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime + cstime: reaped children
    return ticks


class DatabaseCpuSampler(threading.Thread):
    """Samples, every `interval_s`, the CPU of the PostgreSQL backends serving the bench's
    databases (children of the postmaster whose title names one), the postmaster's
    reaped-children CPU (every database: backends that ended between two samples land there)
    and the databases' session count, so each wrk run's window can be charged afterwards (one
    target runs at a time, so a window's CPU is its target's)."""

    def __init__(self, *, server_url: str, databases: list[str], interval_s: float = 0.1) -> None:
        super().__init__(name="db-cpu-sampler", daemon=True)
        self.databases, self.interval_s = databases, interval_s
        self.conn = psycopg.connect(f"{server_url}/postgres", autocommit=True)
        backend_pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with open(f"/proc/{backend_pid}/stat") as f:
            self.postmaster = int(f.read().rsplit(")", 1)[1].split()[1])
        self.samples: list[tuple[float, dict[int, int], int, int]] = []
        self.stop_event = threading.Event()

    def _backends(self) -> list[int]:
        try:
            with open(f"/proc/{self.postmaster}/task/{self.postmaster}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return []
        markers = [f" {database} ".encode() for database in self.databases]
        mine = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    title = f.read()
                    if any(marker in title for marker in markers):
                        mine.append(pid)
            except OSError:
                pass
        return mine

    def _sessions(self) -> int:
        row = self.conn.execute(
            "SELECT sum(sessions) FROM pg_stat_database WHERE datname = ANY(%s)", [self.databases]
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def sample(self) -> None:
        ticks = {pid: t for pid in self._backends() if (t := _stat_ticks(pid)) is not None}
        reaped = _stat_ticks(self.postmaster, children=True) or 0
        self.samples.append((time.time(), ticks, reaped, self._sessions()))

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        self.conn.close()

    def window(self, start: float, end: float) -> dict | None:
        """Our backends' CPU seconds, reaped CPU seconds (all databases), new sessions."""
        before = [s for s in self.samples if s[0] <= start]
        after = [s for s in self.samples if s[0] <= end]
        if not before or not after or after[-1] is before[-1]:
            return None
        (_, t0, r0, s0), (_, t1, r1, s1) = before[-1], after[-1]
        own = sum(ticks - t0.get(pid, 0) for pid, ticks in t1.items())
        # Backends of ours that ended inside the window: their last sampled CPU is in reaped.
        own += sum(ticks - t0.get(pid, 0) for pid, ticks in _ended(self.samples, t0, t1).items())
        return {
            "own_s": own / CLOCK_TICKS,
            "reaped_s": (r1 - r0) / CLOCK_TICKS,
            "sessions": s1 - s0,
        }


def _ended(samples: list, first: dict, last: dict) -> dict[int, int]:
    """The last sampled CPU of backends seen after `first` but gone by `last`."""
    seen: dict[int, int] = {}
    inside = False
    for _, ticks, _, _ in samples:
        if ticks is first:
            inside = True
        if inside:
            seen.update(ticks)
        if ticks is last:
            break
    return {pid: t for pid, t in seen.items() if pid not in last}


def start(command: list[str], env: dict, log: Path, *, cwd: Path = ROOT) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of its workers
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: only what it started
        process.wait(timeout=10)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_cpu_split(files: list[Path], sampler: DatabaseCpuSampler) -> None:
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for file in files:
        for line in file.read_text().splitlines():
            result = json.loads(line)
            if "rps" not in result:
                continue
            db = sampler.window(result["ts"], result["ts"] + result["duration_s"])
            result["db"] = db
            key = (result.get("tag") or "", result["stream"], result["conc"], result["target"])
            rows[key].append(result)
    print("\n### CPU split per run (medians of reps; cores = CPU seconds per wall second)\n")
    print(
        "| scenario | conc | target | req/s | servers cores | wrk cores | postgres cores | "
        "other cores | DB CPU-ms/req | new DB sessions/req | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (tag, stream, conc, target), results in sorted(rows.items()):
        scenario = ("stream" if stream else "non-stream") + (f" {tag}" if tag else "")
        rps = median(r["rps"] for r in results)
        dbs = [r for r in results if r["db"]]
        db_cores = db_ms = sessions = other = None
        if dbs:
            db_s = [r["db"]["own_s"] + r["db"]["reaped_s"] for r in dbs]
            db_cores = median(s / r["duration_s"] for s, r in zip(db_s, dbs, strict=True))
            db_ms = median(s * 1000 / max(r["requests"], 1) for s, r in zip(db_s, dbs, strict=True))
            sessions = median(r["db"]["sessions"] / max(r["requests"], 1) for r in dbs)
            other = max(0.0, median(r["cpu_cores"]["foreign"] for r in results) - db_cores)
        errors = sum(sum(r["errors"].values()) for r in results)
        requests = sum(r["requests"] for r in results)
        print(
            f"| {scenario} | {conc} | {target} | {rps:.0f} | "
            f"{median(r['cpu_cores']['servers'] for r in results):.2f} | "
            f"{median(r['cpu_cores']['wrk'] for r in results):.2f} | {_fmt(db_cores)} | "
            f"{_fmt(other)} | {_fmt(db_ms)} | {_fmt(sessions, '.3f')} | {errors}/{requests} |"
        )
    print(
        "\nservers = the stub plus every router process tree (summarize.py's gw CPU-ms/req takes "
        "the stub's share out); postgres = the bench database's backends, plus backends of any "
        "database that ended during the run (a connection per request shows up there); other = "
        "everything else on the machine (Redis, this script, foreign load)."
    )


def paired_ab_rows(files: list[Path]) -> list[dict]:
    """For each scenario, connection count and router pair (router_wN, base_wN): the gateway
    CPU per request of each rep, as summarize.py counts it (the servers' CPU less the direct
    run's upstream CPU per request, here the same rep's), and this / base per rep: its
    geometric mean and a 90% interval of that mean (a bootstrap over reps, seed fixed).

    The reps of a pair run back to back, so a host whose speed drifts over minutes slows both
    of a pair alike: the per-rep ratios spread much less than the figures themselves."""
    runs: dict[tuple, dict] = {}
    for file in files:
        for line in file.read_text().splitlines():
            result = json.loads(line)
            if result.get("rps"):
                key = (file.stem, result["conc"], result["rep"], result["target"])
                runs[key] = result
    pairs: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for (scenario, conc, rep, target), result in sorted(runs.items()):
        base = runs.get((scenario, conc, rep, target.replace("router_", "base_")))
        direct = runs.get((scenario, conc, rep, "direct"))
        if not target.startswith("router_") or base is None or direct is None:
            continue
        upstream = direct["cpu_cores"]["servers"] / direct["rps"]  # CPU-s per request
        pair = (_gateway_ms(base, upstream), _gateway_ms(result, upstream))
        pairs[(scenario, conc, target)].append(pair)
    rows = []
    draw = random.Random(17)
    for (scenario, conc, target), figures in pairs.items():
        ratios = [this / base for base, this in figures if base > 0 and this > 0]
        if not ratios:
            continue
        means = sorted(geometric_mean(draw.choices(ratios, k=len(ratios))) for _ in range(2000))
        rows.append(
            {
                "scenario": scenario,
                "conc": conc,
                "target": target,
                "reps": len(ratios),
                "base_ms": median(base for base, _ in figures),
                "this_ms": median(this for _, this in figures),
                "ratio": geometric_mean(ratios),
                "low": means[int(0.05 * len(means))],
                "high": means[int(0.95 * len(means)) - 1],
            }
        )
    return rows


def _gateway_ms(run: dict, upstream_cpu_per_request: float) -> float:
    own = run["cpu_cores"]["servers"] - upstream_cpu_per_request * run["rps"]
    return own / run["rps"] * 1e3


def print_paired_ab(files: list[Path]) -> None:
    rows = paired_ab_rows(files)
    if not rows:
        return
    print("\n### A/B, paired by rep (gateway CPU-ms per request, this tree against the baseline)\n")
    print(
        "| scenario | conc | router | reps | base ms (median) | this ms (median) | "
        "this / base (geometric mean of reps) | 90% interval |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['conc']} | {row['target']} | {row['reps']} | "
            f"{row['base_ms']:.2f} | {row['this_ms']:.2f} | {row['ratio']:.3f} | "
            f"{row['low']:.3f}-{row['high']:.3f} |"
        )
    print("\nAn interval that holds 1.000 is no change this run can tell from the host's noise.")


def server_errors_line(count: int) -> str:
    """The server log's verdict in words: "0 answers of 500" read as "nothing answered"."""
    if not count:
        return "no HTTP 500 (Internal Server Error) responses"
    return f"{count} HTTP 500 (Internal Server Error) response{'s' if count > 1 else ''}"


def print_ttfb(rows: list[dict]) -> None:
    if not rows:
        return
    print("\n### time to first SSE byte (sequential, keep-alive; medians)\n")
    print("| model | target | n | first byte p50 ms | p90 | end p50 ms | +first ms | +end ms |")
    print("|---|---|---|---|---|---|---|---|")
    for model in sorted({r["model"] for r in rows}):
        group = {r["target"]: r for r in rows if r["model"] == model}
        direct = group.get("direct")
        for name, row in sorted(group.items(), key=lambda item: (item[0] != "direct", item[0])):
            added_first = row["first_ms"]["p50"] - direct["first_ms"]["p50"] if direct else None
            added_end = row["total_ms"]["p50"] - direct["total_ms"]["p50"] if direct else None
            print(
                f"| {model} | {name} | {row['n']} | {row['first_ms']['p50']:.2f} | "
                f"{row['first_ms']['p90']:.2f} | {row['total_ms']['p50']:.2f} | "
                f"{_fmt(added_first, '+.2f')} | {_fmt(added_end, '+.2f')} |"
            )


def bench_database_prepare(env: dict, *, rate_limit: int | None, tree: Path = ROOT) -> str:
    """Migrate and seed the database of `env` with the checkout `tree`; return a new API key.
    Pinned stub models pass through unchanged; every request must reach the upstream."""
    manage(env, "migrate", "--noinput", "-v0", tree=tree)
    manage(env, "seed_policy", tree=tree)
    key = manage(env, "create_api_key", "gateway-bench", tree=tree).strip().splitlines()[-1]
    manage(
        env,
        "shell",
        "-c",
        "from routing.models import ApiKey, FeatureFlag, ModelProfile\n"
        "from routing.policy_versions import policy_version_create\n"
        f"for name in ({DELAY_MODEL!r}, {CHUNK_DELAY_MODEL!r}):\n"
        "    m = ModelProfile.objects.get(name='gpt-4o-mini'); m.pk = None; m.name = name\n"
        "    m.save()\n"
        "FeatureFlag.objects.filter(name='response_cache').update(enabled=False)\n"
        f"ApiKey.objects.filter(name='gateway-bench').update(rate_limit_per_minute={rate_limit})\n"
        "policy_version_create(actor='gateway-bench', comment='bench models, no cache')\n",
        tree=tree,
    )
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per point, one rep (CI)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--conc", default="1,8,64")
    parser.add_argument("--workers", default="1,2", help="one router per worker count")
    parser.add_argument("--only", help="scenarios to run, e.g. 'stream,delay50-nonstream'")
    parser.add_argument("--no-ttfb", action="store_true")
    parser.add_argument("--out", help="keep the raw JSONL and server logs in this directory")
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument("--conn-max-age", type=int, default=0)
    parser.add_argument(
        "--rate-limit",
        type=int,
        help="requests per minute for the bench key (a Redis counter bumped per request)",
    )
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the routers (experiments)"
    )
    parser.add_argument(
        "--baseline-tree",
        help="A/B: also run the routers of this checkout (e.g. a worktree of main) as base_w<N>, "
        "on the same database, stub and key, interleaved with this tree's in every wrk round",
    )
    parser.add_argument(
        "--baseline-own-db",
        action="store_true",
        help="with --baseline-tree: the baseline gets a database, Redis db (the next number) and "
        "key of its own, migrated by its own code: an A/B across schema changes",
    )
    parser.add_argument("--hold", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    reps, duration, warmup = (1, 2, 1) if args.quick else (args.reps, args.duration, 3)
    if args.baseline_own_db and not args.baseline_tree:
        raise SystemExit("--baseline-own-db needs --baseline-tree")
    for url in (args.pg_url, args.redis_url):
        if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"refusing a non-loopback server: {url}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if not (SHARED_BENCH / "bench.py").exists():
        raise SystemExit(f"{SHARED_BENCH} not found: the shared benchmark kit is needed")

    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    out_dir = Path(args.out) if args.out else workdir / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    database = f"bench_gateway_{os.getpid()}"
    cache = redis.Redis.from_url(args.redis_url)
    stub_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.pg_url}/{database}",
        # Persistent connections leak under ASGI (each request runs its sync code in a
        # thread of its own, and Django keeps connections per thread): 0 is the safe value.
        "CONN_MAX_AGE": str(args.conn_max_age),
        "REDIS_URL": args.redis_url,
        "CACHE_URL": args.redis_url.replace("redis://", "rediscache://"),
        "CELERY_BROKER_URL": "memory://",
        "UPSTREAM_MODE": "live",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{stub_port}/v1",
        "OPENAI_API_KEY": "sk-bench-not-real",
        "UPSTREAM_MAX_RETRIES": "0",
        "ROUTER_ATTEMPTS_PER_MODEL": "1",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("GUNICORN_ACCESS_LOG", None)
    env.update(item.split("=", 1) for item in args.env)
    env.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
    baseline_env, baseline_database, base_cache = None, f"{database}_base", cache
    if args.baseline_own_db:
        redis_url = urlparse(args.redis_url)
        base_redis = redis_url._replace(path=f"/{int(redis_url.path.strip('/') or 0) + 1}").geturl()
        baseline_env = {
            **env,
            "DATABASE_URL": f"{args.pg_url}/{baseline_database}",
            "REDIS_URL": base_redis,
            "CACHE_URL": base_redis.replace("redis://", "rediscache://"),
        }
        base_cache = redis.Redis.from_url(base_redis)

    processes: list[subprocess.Popen] = []
    sampler = None
    database_create(args.pg_url, database)
    cache.flushdb()
    try:
        key = bench_database_prepare(env, rate_limit=args.rate_limit)
        keys = {"router": key, "base": key}
        if baseline_env is not None:  # the baseline's schema differs: its own database and key
            database_create(args.pg_url, baseline_database)
            base_cache.flushdb()
            keys["base"] = bench_database_prepare(
                baseline_env, rate_limit=args.rate_limit, tree=Path(args.baseline_tree).resolve()
            )

        stub = start(
            [PYTHON, str(SHARED_BENCH / "stub_upstream.py"), "--port", str(stub_port)],
            env,
            out_dir / "stub.log",
        )
        processes.append(stub)
        wait_for_port(stub_port, stub)
        targets = [f"direct=http://127.0.0.1:{stub_port}/v1/chat/completions#{stub.pid}"]
        routers = {}
        trees = [("router", ROOT)]
        if args.baseline_tree:
            trees.append(("base", Path(args.baseline_tree).resolve()))
        for workers in [int(w) for w in args.workers.split(",")]:
            for label, tree in trees:
                name = f"{label}_w{workers}"
                port = free_port()
                prom_dir = workdir / f"prometheus-{name}"
                server_env = {
                    **(baseline_env if label == "base" and baseline_env else env),
                    "WEB_CONCURRENCY": str(workers),
                    "BIND": f"127.0.0.1:{port}",
                    "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
                }
                prom_dir.mkdir()
                server = start(
                    [GUNICORN, "-c", "huntaze/gunicorn.conf.py"],
                    server_env,
                    out_dir / f"{label}-w{workers}.log",
                    cwd=tree,
                )
                processes.append(server)
                wait_for_port(port, server)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                routers[name] = url
                targets.append(f"{name}={url}@{keys[label]}#{server.pid}")

        hello = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
        for name, url in routers.items():
            # The first request loads the router model: slow on a busy host.
            status, body = post(url, keys[name.split("_")[0]], hello, timeout_s=60)
            bad_status, _ = post(url, "hz_not-a-key", hello)
            print(f"{name}: smoke request {status}, bad key {bad_status}")
            if status != 200:
                raise SystemExit(f"{name} answered {status}: {body[:300]!r}")
        if args.hold:  # profiling aid: keep everything up for this long, then stop
            print(json.dumps({"keys": keys, "stub": stub_port, "routers": routers}), flush=True)
            time.sleep(args.hold)
            return

        speed_before = host_speed()
        databases = [database, *([baseline_database] if baseline_env is not None else [])]
        sampler = DatabaseCpuSampler(server_url=args.pg_url, databases=databases)
        sampler.sample()
        sampler.start()
        files = []
        target_args = [arg for target in targets for arg in ("--target", target)]
        wanted = set(args.only.split(",")) if args.only else None
        for tag, stream, model in SCENARIOS:
            name = f"{tag or 'delay0'}-{'stream' if stream else 'nonstream'}"
            if wanted and name not in wanted and (tag or "delay0") not in wanted:
                continue
            out = out_dir / f"{name}.jsonl"
            out.unlink(missing_ok=True)
            command = [
                PYTHON,
                str(SHARED_BENCH / "bench.py"),
                *target_args,
                "--conc",
                args.conc,
                "--reps",
                str(reps),
                "--duration",
                str(duration),
                "--warmup",
                str(warmup),
                "--out",
                str(out),
            ]
            command += ["--stream"] if stream else []
            command += ["--model", model, "--tag", tag] if model else []
            runs = len(args.conc.split(",")) * len(targets) * reps
            budget_s = runs * (duration + 15) + len(targets) * (warmup + 15) + 60
            print(f"{name}: {runs} wrk runs of {duration} s", flush=True)
            subprocess.run(command, check=True, capture_output=True, timeout=budget_s)
            files.append(out)
        sampler.sample()

        for file in files:
            summary = subprocess.run(
                [PYTHON, str(SHARED_BENCH / "summarize.py"), str(file)],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            )
            print(summary.stdout)
        print_cpu_split(files, sampler)
        print_paired_ab(files)
        print(f"host speed probe (local_processes.host_speed): {speed_before} before the runs,")
        print(f"{host_speed()} after them")

        if not args.no_ttfb and (SHARED_BENCH / "ttfb.py").exists():
            ttfb_rows = []
            ttfb_targets = [t.split("#", 1)[0] for t in targets]
            rounds, per_round = (2, 10) if args.quick else (5, 30)
            for model in ("gpt-4o-mini", CHUNK_DELAY_MODEL):
                command = [PYTHON, str(SHARED_BENCH / "ttfb.py"), "--model", model]
                command += ["--rounds", str(rounds), "--per-round", str(per_round)]
                command += ["--max-seconds", "120"]
                for target in ttfb_targets:
                    command += ["--target", target]
                done = subprocess.run(command, capture_output=True, text=True, timeout=200)
                if done.returncode != 0:
                    print(f"ttfb.py failed for {model}: {done.stderr.strip()[-300:]}")
                    continue
                for line in done.stdout.strip().splitlines():
                    ttfb_rows.append({**json.loads(line), "model": model})
            print_ttfb(ttfb_rows)

        statuses = manage(
            env,
            "shell",
            "-v",
            "0",
            "-c",
            "from django.db.models import Count; from usage.models import UsageRecord\n"
            "print(dict(UsageRecord.objects.values_list('status').annotate(n=Count('id'))"
            ".order_by()))",
        ).strip()
        print(f"\nledger rows by status: {statuses}")
        for log in sorted([*out_dir.glob("router-w*.log"), *out_dir.glob("base-w*.log")]):
            lines = log.read_text().splitlines()
            errors = [line for line in lines if line.startswith("Internal Server Error")]
            causes = Counter(line for line in lines if line.startswith(ERROR_PREFIXES))
            top = f" (most: {causes.most_common(1)[0][0][:140]})" if causes else ""
            print(f"{log.stem}: {server_errors_line(len(errors))}{top}")
        if args.out:
            print(f"raw results and server logs: {out_dir}")
    except BaseException:
        for log in sorted(out_dir.glob("*.log")):  # the servers' side of a failure
            print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]))
        raise
    finally:
        if sampler is not None:
            sampler.stop()
        for process in reversed(processes):
            stop(process)
        database_drop(args.pg_url, database)
        cache.flushdb()
        cache.close()
        if baseline_env is not None:
            database_drop(args.pg_url, baseline_database)
            base_cache.flushdb()
            base_cache.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # runs main's finally: servers stopped, database dropped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main()
