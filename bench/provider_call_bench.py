"""CPU of one upstream call: the SDK's `client.post` (as the provider called it before) against
the provider's own POST through the SDK's HTTP client (routing.providers.chat._post), and a
bare aiohttp POST for the floor. Non-streamed, against the shared stub upstream.

Prints figures; asserts nothing:
  .venv/bin/python bench/provider_call_bench.py --calls 2000 --rounds 7
Each round makes `calls` calls per variant, the variants alternating (A B C, then C B A); the
figure is the event loop thread's CPU time (time.thread_time) per call, best and median over
rounds. --http httpx uses the SDK's httpx transport instead of aiohttp (production's).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "huntaze.settings")

import django  # noqa: E402

django.setup()

import aiohttp  # noqa: E402
import openai  # noqa: E402
import uvloop  # noqa: E402

from bench.local_processes import host_speed  # noqa: E402
from routing.providers import chat  # noqa: E402

STUB = ROOT.parent / "shared" / "bench" / "stub_upstream.py"
BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are the creator's assistant."},
        {"role": "user", "content": "Write a short thank-you note to a subscriber."},
    ],
    "max_tokens": 200,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _run(base_url: str, http: str, calls: int, rounds: int) -> dict[str, list[float]]:
    if http == "aiohttp":
        http_client = openai.DefaultAioHttpClient(timeout=30.0)
    else:
        http_client = openai.DefaultAsyncHttpxClient(timeout=30.0)
    client = openai.AsyncOpenAI(
        api_key="sk-bench", base_url=base_url, http_client=http_client, timeout=30.0, max_retries=0
    )
    endpoint = chat._endpoint_build(client, http_client, sandbox=False)
    session = aiohttp.ClientSession()
    url = f"{base_url}/chat/completions"
    headers = dict(endpoint.headers)

    async def sdk_post():
        raw = await client.post(
            "/chat/completions",
            body=BODY,
            cast_to=bytes,
            options={"timeout": 29.5, "idempotency_key": "req_1"},
        )
        return json.loads(raw)

    async def provider_post():
        response = await chat._post(endpoint, BODY, timeout_s=29.5)
        return json.loads(response.content)

    async def bare_aiohttp():
        async with session.post(url, data=json.dumps(BODY).encode(), headers=headers) as answer:
            return json.loads(await answer.read())

    variants = {
        "sdk client.post": sdk_post,
        "provider _post": provider_post,
        "bare aiohttp": bare_aiohttp,
    }
    for variant in variants.values():  # warm: connections, caches
        for _ in range(200):
            await variant()
    figures: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for round_ in range(rounds):
        for name in order if round_ % 2 == 0 else reversed(order):
            started = time.thread_time()
            for _ in range(calls):
                await variants[name]()
            figures[name].append((time.thread_time() - started) / calls * 1e6)
    await session.close()
    await client.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--http", choices=["aiohttp", "httpx"], default="aiohttp")
    args = parser.parse_args()
    port = _free_port()
    stub = subprocess.Popen(
        [sys.executable, str(STUB), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        print(f"host speed probe (local_processes.host_speed): {host_speed()}")
        figures = uvloop.run(
            _run(f"http://127.0.0.1:{port}/v1", args.http, args.calls, args.rounds)
        )
    finally:
        stub.terminate()
        stub.wait()
    print(f"{args.calls} calls x {args.rounds} rounds, {args.http}: CPU µs per call")
    for name, values in figures.items():
        print(f"  {name:16} best {min(values):7.1f}   median {statistics.median(values):7.1f}")


if __name__ == "__main__":
    main()
