"""Micro-benchmark of the pure decision engine: microseconds per decision.

Prints figures; asserts nothing. Run: `make bench-engine` (options: --evaldata, --prompts).

Every decision gets a different prompt, so no figure comes from a cache of an earlier one:
  - 1,000-token prompts: an instruction, pasted material from the public evaluation data
    (../shared/evaldata: MMLU, GSM8K, LegalBench, awesome-chatgpt-prompts, HateCheck; a
    built-in synthetic mix when it is absent) and a closing question, each prompt its own
    seeded mix;
  - short chat messages: fan messages, each with its own name, number or emoji.
The engine call (routing.engine.route) includes category inference, complexity estimation and
the trigger lookup, with the learned router (the current artifact) and, for comparison, with
the keyword classifier it replaced (the fallback). Also printed: the router's load time and
the memory it adds to a process, and p50 / p99 per decision. Token counting (tiktoken, done
once per request before the engine) is timed on the same prompts in the same run, as the
baseline of the ratios. Times are CPU time of this thread, best of several rounds over all
prompts, so other processes on the machine inflate them as little as possible.
"""

import argparse
import csv
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))

from bench.local_processes import host_speed  # noqa: E402
from routing import tokens  # noqa: E402
from routing.engine import RouteRequest, route  # noqa: E402
from routing.learned.evaluation import seeded_policy  # noqa: E402
from routing.learned.model import load_router  # noqa: E402

ROUNDS = 7
TARGET_TOKENS = 1000

INSTRUCTIONS = (
    "Read the material below and help me with it.",
    "You are my assistant for the creator business. Use the notes below.",
    "Summarise the following for my manager.",
    "I pasted some documents. Go through them carefully.",
    "Context for the task is below; keep your answer short.",
    "Act as an analyst and review this.",
)
QUESTIONS = (
    "What should I do first, and why?",
    "Can you turn this into a plan for next month?",
    "Which of these points matter most for revenue?",
    "Write a caption I can post about this.",
    "Is there anything here that could get me into legal trouble?",
    "Give me three options with pros and cons.",
    "Explain it simply.",
    "Draft a friendly reply to my fans about it.",
)
SYNTHETIC = (
    "Our subscriptions grew from 8,100 to 9,400 last quarter while churn stayed near 6%.",
    "The agency contract renews automatically unless either party gives 30 days notice.",
    "Fans keep asking for more behind-the-scenes content and custom videos.",
    "The landing page loads slowly on mobile and the signup form fails on Safari.",
    "We compared three pricing tiers: $9.99, $14.99 and a $29.99 bundle with extras.",
    "A fan wrote that he misses my posts and wants a personal message for his birthday.",
    "The privacy policy has to mention how long we keep payment data and who sees it.",
    "Engagement peaks on Friday evenings; Tuesday mornings are the quietest slot.",
    "def top_fans(tips, n):\n    return sorted(tips, key=lambda t: t['amount'])[-n:]",
    "Marketing wants a giveaway for the anniversary, with a countdown and a new hashtag.",
    "Refund requests doubled after the price change, mostly from monthly subscribers.",
    "The moderation queue flagged a comment calling another fan an idiot and a loser.",
)
FAN_MESSAGES = (
    "hey babe how was your day?",
    "good morning gorgeous, thinking of you",
    "omg that last pic was amazing lol",
    "when is the next live stream?",
    "can I get a custom video for my birthday",
    "miss you! are you online tonight",
    "haha you always make me smile",
    "what are you up to this weekend?",
    "just subscribed, love your content",
    "do you have any ppv sets coming out soon",
)
FAN_NAMES = ("", "Alex", "babe", "Sam", "cutie", "Jordan", "hun", "Chris")
FAN_ENDINGS = ("", " 😘", " ❤️", "!!", " xoxo", "??", " 🔥", " :)")


def load_current_router():
    """Load the current artifact cold; return it with its load seconds and added RSS MB."""
    folder = ROOT / "routing" / "learned" / "artifacts"
    artifact = (folder / "CURRENT").read_text().strip()
    before = _rss_mb()
    started = time.perf_counter()
    router = load_router(str(folder / f"{artifact}.npz"))
    return router, time.perf_counter() - started, _rss_mb() - before


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def percentiles_us(fn: Callable[[object], object], items: Sequence[object]) -> tuple[float, float]:
    """Return p50 and p99 wall microseconds of single calls, over every item three times."""
    timings = []
    for _ in range(3):
        for item in items:
            started = time.perf_counter_ns()
            fn(item)
            timings.append(time.perf_counter_ns() - started)
    timings.sort()
    return timings[len(timings) // 2] / 1e3, timings[len(timings) * 99 // 100] / 1e3


def material(evaldata: Path) -> tuple[list[str], str]:
    """Return passages to paste into the long prompts, and where they come from."""
    passages = list(_evaldata_passages(evaldata)) if evaldata.is_dir() else []
    if passages:
        return passages, f"public evaluation data ({evaldata})"
    return list(SYNTHETIC), "built-in synthetic passages (no evaluation data found)"


def _evaldata_passages(root: Path) -> Iterator[str]:
    rng = random.Random(7)
    files = sorted((root / "routellm/mmlu_responses").glob("mmlu_*.csv"))
    for path in rng.sample(files, min(12, len(files))):
        yield from _column(path, "prompt", limit=40)
    yield from _column(root / "routellm/gsm8k_gsm8k_responses.csv", "prompt", limit=200)
    yield from _column(root / "moderation/hatecheck/test_suite_cases.csv", "test_case", limit=200)
    yield from _column(root / "awesome_chatgpt_prompts/prompts_2025-01-06.csv", "prompt", limit=170)
    for path in sorted((root / "legalbench/tasks").glob("*/train.tsv"))[:40]:
        yield from _column(path, "text", limit=5, delimiter="\t")


def _column(path: Path, name: str, *, limit: int, delimiter: str = ",") -> Iterator[str]:
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle, delimiter=delimiter)):
            if i >= limit:
                break
            if (row.get(name) or "").strip():
                yield row[name].strip()


def long_prompts(passages: Sequence[str], count: int) -> list[str]:
    """Return `count` different prompts of about TARGET_TOKENS tokens each."""
    rng = random.Random(2024)
    prompts = []
    for _ in range(count):
        parts = [rng.choice(INSTRUCTIONS)]
        text = parts[0]
        while tokens.count_text_tokens(text)[0] < TARGET_TOKENS:
            parts.append(rng.choice(passages))
            text = "\n\n".join([*parts, rng.choice(QUESTIONS)])
        # Trim the pasted material, not the question, to land near the target.
        question = text.rsplit("\n\n", 1)[1]
        body = text[: -len(question) - 2]
        excess = tokens.count_text_tokens(text)[0] - TARGET_TOKENS
        if excess > 0:
            body = body[: max(len(parts[0]), len(body) - excess * len(text) // TARGET_TOKENS)]
        prompts.append(f"{body}\n\n{question}")
    return prompts


def chat_messages(count: int) -> list[str]:
    """Return `count` different fan messages."""
    rng = random.Random(11)
    messages: dict[str, None] = {}
    while len(messages) < count:
        name = rng.choice(FAN_NAMES)
        text = rng.choice(FAN_MESSAGES)
        text = f"{name} {text}".strip() if rng.random() < 0.5 else f"{text} {name}".strip()
        text += rng.choice(FAN_ENDINGS)
        if text in messages:  # the combinations run out: a number keeps each one different
            text += f" #{len(messages)}"
        messages[text] = None
    return list(messages)


def per_call_us(fn: Callable[[object], object], items: Sequence[object]) -> float:
    """Return CPU microseconds per call, best of ROUNDS rounds over all items."""
    for item in items[:10]:
        fn(item)  # compile the policy's lookups and warm the interpreter
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.thread_time()
        for item in items:
            fn(item)
        best = min(best, time.thread_time() - started)
    return best / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaldata", type=Path, default=ROOT.parent / "shared" / "evaldata")
    parser.add_argument("--prompts", type=int, default=200, help="distinct prompts per case")
    args = parser.parse_args()

    router, load_s, added_mb = load_current_router()
    policies = {"learned router": seeded_policy(router), "keyword fallback": seeded_policy()}
    passages, source = material(args.evaldata)
    long = long_prompts(passages, args.prompts)
    short = chat_messages(args.prompts)
    counts = {text: tokens.count_text_tokens(text) for text in [*long, *short]}
    token_source = counts[long[0]][1]
    mean_tokens = sum(counts[text][0] for text in long) / len(long)
    mean_chars = sum(map(len, long)) / len(long)

    def requests(texts: list[str], category: str | None = None) -> list[RouteRequest]:
        return [RouteRequest(text=t, prompt_tokens=counts[t][0], category=category) for t in texts]

    def count(text: str) -> object:
        return tokens.count_text_tokens(text)

    tiktoken_long = per_call_us(count, long)
    tiktoken_short = per_call_us(count, short)
    cases = (
        ("1,000-token prompts, category inferred", requests(long), tiktoken_long),
        ("1,000-token prompts, category given", requests(long, "strategy"), tiktoken_long),
        ("short chat messages, category inferred", requests(short), tiktoken_short),
    )

    if len(set(long)) < len(long) or len(set(short)) < len(short):
        raise SystemExit("the prompts must all differ, or a cache could serve a repeat")
    print(f"prompts: {len(long)} distinct long ones from {source}")
    print(
        f"  {mean_tokens:,.0f} {token_source} tokens, {mean_chars:,.0f} characters on average; "
        f"{len(short)} distinct chat messages; load average {os.getloadavg()[0]:.2f}; "
        f"host speed probe {host_speed()}"
    )
    print(
        f"router {router.artifact_id}: loaded in {load_s:.2f} s, "
        f"+{added_mb:.0f} MB resident (targets: <= 2 s, <= 200 MB)"
    )
    print(
        "scoring: the compiled kernel"
        if router.kernel is not None
        else "scoring: numpy (the compiled kernel is not built: python scripts/build_kernel.py)"
    )
    print(f"CPU time per call, best of {ROUNDS} rounds over all prompts; p50 / p99 wall per call")
    print(
        f"{'case':<46}{'engine':>17}{'µs/decision':>12}{'p50 µs':>9}{'p99 µs':>9}"
        f"{'tiktoken µs':>13}{'engine/tiktoken':>17}"
    )
    for name, items, baseline in cases:
        for engine, policy in policies.items():

            def decide(request: RouteRequest, policy=policy) -> object:
                return route(request=request, policy=policy)

            us = per_call_us(decide, items)
            p50, p99 = percentiles_us(decide, items)
            print(
                f"{name:<46}{engine:>17}{us:>12.1f}{p50:>9.1f}{p99:>9.1f}{baseline:>13.1f}"
                f"{us / baseline:>16.2f}x"
            )
    print("tiktoken µs: counting the same prompts' tokens, done once per request before the engine")
    print("targets (learned, inferred): 1,000 tokens p50 <= 300 µs, p99 <= 1 ms; chat <= 100 µs")


if __name__ == "__main__":
    main()
