"""The sandbox upstream run as a script, as the README's local set-up runs it, and served in
the test process as the drills serve it."""

import selectors
import subprocess
import sys
import time
from pathlib import Path

import openai

from routing.providers import sandbox
from routing.providers.sandbox_chat import state

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 30


def _first_line(process: subprocess.Popen) -> str:
    """The script's first line of output, or "" if it says nothing in time."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=START_TIMEOUT_S):
            return ""
    return process.stdout.readline().strip()


def test_python_m_routing_sandbox_answers_a_chat_completion_over_http():
    # given the sandbox started as `python -m routing.providers.sandbox` on a free port of 127.0.0.1
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "routing.providers.sandbox", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(process)
        assert line.startswith("sandbox upstream on http://127.0.0.1:"), line
        base_url = line.rpartition(" ")[2]
        client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=10)
        # when
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
        )
        # then
        assert completion.choices[0].message.content.startswith("[sandbox gpt-4o-mini]")
        assert completion.usage.prompt_tokens > 0
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()


def test_reset_sandbox_answers_over_http_without_the_latency_an_earlier_test_set():
    # given the latency a sandbox-mode test left (drill 11 copies SANDBOX_LATENCY_MS = 2000
    # into the state), a stream test's chunk delay, and the sandbox served over HTTP
    state.latency_ms, state.chunk_delay_ms = 2000, 50
    server = sandbox.serve()
    try:
        base_url = f"http://127.0.0.1:{server.server_port}/v1"
        client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=10)
        # when the next test starts from a reset sandbox and calls it
        state.reset()
        started = time.monotonic()
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
        )
        elapsed_s = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    # then it answers at once, not 2 s later
    assert (state.latency_ms, state.chunk_delay_ms) == (0, 0)
    assert elapsed_s < 1.0
