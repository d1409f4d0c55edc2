"""Time to first SSE byte through the router against the upstream directly, in one run.

Starts an OpenAI-compatible stub upstream on 127.0.0.1 (../shared/bench/stub_upstream.py when
present, else our sandbox's HTTP server), the router under uvicorn in live mode pointed at it
(a throwaway SQLite database, one API key), then runs ../shared/bench/ttfb.py (or its own
probe) against both, interleaved, and prints medians and the added time. With 20 ms between
upstream chunks, added time at stream end should stay about the added time at first byte:
the router adds no buffering. A benchmark: prints figures, asserts nothing. Every process it
starts is stopped at the end; every loop is bounded.

    .venv/bin/python bench/ttfb_bench.py [--rounds 5 --per-round 20]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Run as a script: this folder is on sys.path.
from local_processes import free_port, manage, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = ROOT.parent / "shared" / "bench"
PYTHON = sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=120)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="ttfb-bench-")
    stub_port, router_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir}/bench.sqlite3",
        "UPSTREAM_MODE": "live",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{stub_port}/v1",
        "OPENAI_API_KEY": "sk-bench-not-real",
        "ROUTER_ATTEMPTS_PER_MODEL": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "seed_policy")
    key = manage(env, "create_api_key", "ttfb-bench").strip().splitlines()[-1]
    # The stub's model suffix -cd20 puts 20 ms between chunks; pin it as a model profile.
    manage(
        env,
        "shell",
        "-c",
        "from routing.models import ModelProfile; from routing.policy_versions import "
        "policy_version_create; m = ModelProfile.objects.get(name='gpt-4o-mini'); "
        "m.pk = None; m.name = 'gpt-4o-mini-cd20'; m.save(); "
        "policy_version_create(actor='ttfb-bench')",
    )

    stub_script = SHARED_BENCH / "stub_upstream.py"
    if stub_script.exists():
        stub_cmd = [PYTHON, str(stub_script), "--port", str(stub_port), "--no-uvloop"]
    else:
        stub_cmd = [PYTHON, "-m", "routing.providers.sandbox", "--port", str(stub_port)]
    router_cmd = [
        PYTHON,
        "-m",
        "uvicorn",
        "huntaze.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(router_port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    processes = [
        subprocess.Popen(stub_cmd, cwd=ROOT, env=env),
        subprocess.Popen(router_cmd, cwd=ROOT, env=env),
    ]
    try:
        wait_for_port(stub_port)
        wait_for_port(router_port)
        probe = SHARED_BENCH / "ttfb.py"
        if not probe.exists():
            raise SystemExit("../shared/bench/ttfb.py not found")
        targets = [
            f"direct=http://127.0.0.1:{stub_port}/v1/chat/completions",
            f"router=http://127.0.0.1:{router_port}/v1/chat/completions@{key}",
        ]
        print(
            f"{'model':<20}{'target':<8}{'n':>5}{'first byte p50':>16}{'p90':>9}"
            f"{'end p50':>10}{'added first':>13}{'added end':>11}"
        )
        for model in ("gpt-4o-mini", "gpt-4o-mini-cd20"):
            command = [
                PYTHON,
                str(probe),
                "--model",
                model,
                "--rounds",
                str(args.rounds),
                "--per-round",
                str(args.per_round),
                "--max-seconds",
                str(args.max_seconds),
            ]
            for target in targets:
                command += ["--target", target]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows = {r["target"]: r for r in map(json.loads, output.strip().splitlines())}
            direct = rows["direct"]
            for name, row in rows.items():
                added_first = row["first_ms"]["p50"] - direct["first_ms"]["p50"]
                added_end = row["total_ms"]["p50"] - direct["total_ms"]["p50"]
                print(
                    f"{model:<20}{name:<8}{row['n']:>5}{row['first_ms']['p50']:>13.2f} ms"
                    f"{row['first_ms']['p90']:>9.2f}{row['total_ms']['p50']:>10.2f}"
                    f"{added_first:>10.2f} ms{added_end:>8.2f} ms"
                )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
