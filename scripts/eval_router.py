"""Evaluate the keyword classifier and the complexity estimator on public labelled prompts.

Reads the data sets in place (never copy them into the repository), samples a bounded,
deterministic number of prompts per data set and prints:
  (a) classifier accuracy per data set and per category, and a confusion table;
  (b) the complexity score distribution per data set, and how the score relates to the
      RouteLLM flags (did the cheap model fail where the premium one succeeded?);
  (c) microseconds per call for estimate_complexity(), classify() and find_trigger().

    .venv/bin/python scripts/eval_router.py [--evaldata ../shared/evaldata] [--per-dataset 300]

The category mapping is the one in the data's README.md (a judgement, not ground truth).
"""

import argparse
import csv
import os
import random
import statistics
import sys
import time
import timeit
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from routing.classifier import CategoryKeywords, classify, find_trigger  # noqa: E402
from routing.complexity import estimate_complexity  # noqa: E402
from routing.defaults import (  # noqa: E402
    DEFAULT_CLASSIFIER_KEYWORDS,
    DEFAULT_CRITICAL_TRIGGERS,
)
from routing.learned.data import COMPLIANCE_TASK_PREFIXES  # noqa: E402
from routing.learned.evaluation import MMLU_CATEGORIES  # noqa: E402
from routing.learned.external_data import awesome_role_categories  # noqa: E402

LEGALBENCH_META_COLUMNS = {"index", "answer", "document_name", "case id", "year"}

# "family" accuracy counts analytics_plus as analytics: the README maps econometrics and
# statistics to analytics, while their vocabulary (regression, time series) is deep analytics.
FAMILY = {"analytics_plus": "analytics"}
# Categories that always go to the premium tier: a wrong guess into them costs money.
ALWAYS_FULL = {"legal", "compliance"}
HIGH_SCORE = 7.0


@dataclass(frozen=True)
class Sample:
    dataset: str
    text: str
    expected: str | None  # router category, None when the data set is not mapped
    weak_correct: bool | None = None  # RouteLLM: Mixtral-8x7B answered correctly
    strong_correct: bool | None = None  # RouteLLM: GPT-4-1106 answered correctly


def main() -> None:
    """Parse the arguments, load the samples and print the three reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaldata", type=Path, default=REPO_ROOT.parent / "shared/evaldata")
    parser.add_argument("--per-dataset", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--default-category", default="chatbot")
    parser.add_argument("--min-confidence", type=float, default=0.34)
    parser.add_argument(
        "--show-errors", type=int, default=0, help="misclassified examples to print"
    )
    args = parser.parse_args()

    count_tokens = _token_counter(args.evaldata)
    samples = _load_samples(args.evaldata, args.per_dataset, args.seed)
    categories = tuple(
        CategoryKeywords(slug=slug, keywords=keywords)
        for slug, keywords in DEFAULT_CLASSIFIER_KEYWORDS.items()
    )

    results = []
    for sample in samples:
        found = classify(
            sample.text,
            categories=categories,
            default_category=args.default_category,
            min_confidence=args.min_confidence,
        )
        score = estimate_complexity(sample.text, token_count=count_tokens(sample.text)).score
        results.append((sample, found, score))

    _report_classification(results, args)
    _report_thresholds(samples, categories, args)
    _report_complexity(results)
    _report_speed(samples, categories, count_tokens, args)


def _token_counter(evaldata: Path) -> Callable[[str], int]:
    """Return tiktoken's o200k counter when its offline files are found, else len/4."""
    shared_cache = evaldata.resolve().parent / "tiktoken"
    if "TIKTOKEN_CACHE_DIR" not in os.environ and shared_cache.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(shared_cache)
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        try:
            import tiktoken

            encoding = tiktoken.get_encoding("o200k_base")
            print(f"token counts: tiktoken o200k_base ({os.environ['TIKTOKEN_CACHE_DIR']})")
            return lambda text: len(encoding.encode(text, disallowed_special=()))
        except Exception as error:  # any failure (missing files, no network) means: approximate
            print(f"tiktoken unavailable ({error}); ", end="")
    print("token counts: len(text) / 4")
    return lambda text: len(text) // 4


# --- data ---------------------------------------------------------------------------------


def _load_samples(root: Path, per_dataset: int, seed: int) -> list[Sample]:
    by_dataset: dict[str, list[Sample]] = defaultdict(list)
    for loader in (_mmlu, _gsm8k, _hatecheck, _legalbench, _awesome):
        for sample in loader(root):
            by_dataset[sample.dataset].append(sample)
    samples = []
    for name in sorted(by_dataset):
        rows = by_dataset[name]
        # Seeded per data set, so adding a data set does not change another one's sample.
        picked = random.Random(f"{seed}:{name}").sample(
            range(len(rows)), min(per_dataset, len(rows))
        )
        samples.extend(rows[i] for i in sorted(picked))
    return samples


def _mmlu(root: Path) -> Iterator[Sample]:
    for path in sorted((root / "routellm/mmlu_responses").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        expected = MMLU_CATEGORIES.get(subject)
        dataset = f"mmlu/{subject}" if expected else "mmlu/other subjects"
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            weak, strong = (
                header.index("mistralai/Mixtral-8x7B-Instruct-v0.1"),
                header.index("gpt-4-1106-preview"),
            )
            for row in reader:
                yield Sample(dataset, row[0], expected, row[weak] == "True", row[strong] == "True")


def _gsm8k(root: Path) -> Iterator[Sample]:
    with (root / "routellm/gsm8k_gsm8k_responses.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            yield Sample(
                "gsm8k",
                row["prompt"],
                "analytics",
                row["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True",
                row["gpt-4-1106-preview"] == "True",
            )


def _hatecheck(root: Path) -> Iterator[Sample]:
    with (root / "moderation/hatecheck/test_suite_cases.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            hateful = row["label_gold"] == "hateful"
            dataset = "hatecheck/hateful" if hateful else "hatecheck/non-hateful"
            yield Sample(dataset, row["test_case"].strip(), "moderation" if hateful else None)


def _legalbench(root: Path) -> Iterator[Sample]:
    for path in sorted((root / "legalbench/tasks").glob("*/train.tsv")):
        task = path.parent.name
        compliance = task.startswith(COMPLIANCE_TASK_PREFIXES)
        dataset = "legalbench/compliance" if compliance else "legalbench/legal"
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                parts = [v for k, v in row.items() if k not in LEGALBENCH_META_COLUMNS and v]
                yield Sample(dataset, "\n".join(parts), "compliance" if compliance else "legal")


def _awesome(root: Path) -> Iterator[Sample]:
    role_category = awesome_role_categories()
    with (root / "awesome_chatgpt_prompts/prompts_2025-01-06.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            category = role_category.get(row["act"].strip())
            dataset = "awesome_prompts/mapped" if category else "awesome_prompts/other"
            yield Sample(dataset, row["prompt"], category)


# --- reports ------------------------------------------------------------------------------


def _report_classification(results: list, args: argparse.Namespace) -> None:
    print(f"\n(a) CLASSIFIER  default={args.default_category} min_confidence={args.min_confidence}")
    print(
        f"{'data set':32} {'n':>5} {'expected':>15} {'acc':>6} {'family':>7} {'fallback':>8}"
        "  most predicted"
    )
    labelled = [(s, f) for s, f, _ in results if s.expected]
    for dataset in sorted({s.dataset for s, _, _ in results}):
        rows = [(s, f) for s, f, _ in results if s.dataset == dataset]
        predicted = Counter(f.category for _, f in rows)
        common = ", ".join(f"{c} {n / len(rows):.0%}" for c, n in predicted.most_common(3))
        fallback = sum(f.fell_back for _, f in rows) / len(rows)
        labels = {s.expected for s, _ in rows}
        expected = labels.pop() if len(labels) == 1 else "(mixed)"
        if expected is None:
            print(
                f"{dataset:32} {len(rows):5} {'(unmapped)':>15} {'':>6} {'':>7} {fallback:8.0%}"
                f"  {common}"
            )
            continue
        acc = sum(f.category == s.expected for s, f in rows) / len(rows)
        tier = sum(_family(f.category) == _family(s.expected) for s, f in rows) / len(rows)
        print(
            f"{dataset:32} {len(rows):5} {expected:>15} {acc:6.1%} {tier:7.1%} {fallback:8.0%}"
            f"  {common}"
        )

    correct = sum(f.category == s.expected for s, f in labelled)
    family = sum(_family(f.category) == _family(s.expected) for s, f in labelled)
    per_category = defaultdict(list)
    for s, f in labelled:
        per_category[s.expected].append(f.category == s.expected)
    macro = statistics.mean(statistics.mean(hits) for hits in per_category.values())
    print(
        f"\noverall (mapped samples): {correct}/{len(labelled)} = {correct / len(labelled):.1%}"
        f"   family {family / len(labelled):.1%}   macro over categories {macro:.1%}"
    )
    print(
        "accuracy per expected category: "
        + ", ".join(
            f"{c} {statistics.mean(h):.0%} (n={len(h)})" for c, h in sorted(per_category.items())
        )
    )

    slugs = list(DEFAULT_CLASSIFIER_KEYWORDS)
    print("\nconfusion (rows expected, columns predicted; counts)")
    short = {slug: slug[:9] for slug in slugs}
    print(f"{'':15}" + "".join(f"{short[c]:>10}" for c in slugs))
    for expected in slugs:
        row = Counter(f.category for s, f in labelled if s.expected == expected)
        if row:
            print(f"{expected:15}" + "".join(f"{row.get(c, 0):>10}" for c in slugs))

    if args.show_errors:
        print(f"\nfirst {args.show_errors} misclassified per data set")
        for dataset in sorted({s.dataset for s, _ in labelled}):
            errors = [
                (s, f) for s, f in labelled if s.dataset == dataset and f.category != s.expected
            ]
            for s, f in errors[: args.show_errors]:
                text = " ".join(s.text.split())[:140]
                print(f"  [{dataset}] -> {f.category} {f.confidence:.2f} {f.matched[:4]} | {text}")


def _report_thresholds(samples: list[Sample], categories: tuple, args: argparse.Namespace) -> None:
    labelled = [s for s in samples if s.expected]
    # HateCheck rows are bare messages with no "is this ok?" request around them.
    requests = [s for s in labelled if not s.dataset.startswith("hatecheck")]
    print(
        "\nby min_confidence: accuracy (all mapped | without bare HateCheck messages), "
        "fallback share, and wrong guesses into always-premium legal/compliance"
    )
    for threshold in (0.0, 0.2, 0.3, 0.34, 0.4, 0.5, 0.6):
        found = [
            classify(
                s.text,
                categories=categories,
                default_category=args.default_category,
                min_confidence=threshold,
            )
            for s in labelled
        ]
        pairs = list(zip(labelled, found, strict=True))
        acc = sum(f.category == s.expected for s, f in pairs) / len(pairs)
        acc_requests = sum(
            f.category == s.expected for s, f in pairs if not s.dataset.startswith("hatecheck")
        ) / len(requests)
        fallback = sum(f.fell_back for _, f in pairs) / len(pairs)
        premium = sum(
            f.category in ALWAYS_FULL and s.expected not in ALWAYS_FULL for s, f in pairs
        ) / sum(s.expected not in ALWAYS_FULL for s in labelled)
        print(
            f"  {threshold:4.2f}: accuracy {acc:6.1%} | {acc_requests:6.1%}"
            f"  fallback {fallback:5.1%}  wrongly premium {premium:5.1%}"
        )


def _report_complexity(results: list) -> None:
    print(
        f"\n(b) COMPLEXITY per data set (share >= {HIGH_SCORE:g} is what code/strategy/"
        "analytics_plus would send to the premium tier)"
    )
    print(f"{'data set':32} {'n':>5} {'mean':>5} {'p10':>5} {'p50':>5} {'p90':>5} {'>=7':>6}")
    for dataset in sorted({s.dataset for s, _, _ in results}):
        scores = sorted(score for s, _, score in results if s.dataset == dataset)
        p10, p50, p90 = (_percentile(scores, q) for q in (0.1, 0.5, 0.9))
        high = sum(score >= HIGH_SCORE for score in scores) / len(scores)
        print(
            f"{dataset:32} {len(scores):5} {statistics.mean(scores):5.2f} {p10:5.1f} {p50:5.1f}"
            f" {p90:5.1f} {high:6.1%}"
        )

    flagged = [(s, score) for s, _, score in results if s.weak_correct is not None]
    print(
        "\nRouteLLM flags (MMLU all subjects + GSM8K): does a high score find the prompts the "
        "cheap model gets wrong?"
    )
    groups = {
        "weak model wrong": [sc for s, sc in flagged if not s.weak_correct],
        "weak model right": [sc for s, sc in flagged if s.weak_correct],
        "strong right, weak wrong": [
            sc for s, sc in flagged if s.strong_correct and not s.weak_correct
        ],
        "both right": [sc for s, sc in flagged if s.strong_correct and s.weak_correct],
    }
    for name, scores in groups.items():
        if scores:
            high = sum(sc >= HIGH_SCORE for sc in scores) / len(scores)
            print(
                f"  {name:26} n={len(scores):5}  mean {statistics.mean(scores):4.2f}  "
                f"median {statistics.median(scores):4.1f}  share >= 7: {high:5.1%}"
            )
    wrong, right = groups["weak model wrong"], groups["weak model right"]
    if wrong and right:
        print(
            f"  AUC (P[score of a weak-wrong prompt > a weak-right one]): {_auc(wrong, right):.3f}"
        )
        for cut in (5, 6, 7, 8):
            premium = [s for s, sc in flagged if sc >= cut]
            caught = sum(not s.weak_correct for s in premium)
            print(
                f"  threshold {cut}: {len(premium) / len(flagged):5.1%} of prompts go premium, "
                f"catching {caught / len(wrong):5.1%} of weak-model failures"
            )


def _report_speed(samples: list[Sample], categories: tuple, count_tokens: Callable, args) -> None:
    print(
        "\n(c) SPEED (CPU microseconds per call on this machine; distinct texts, so no cache hits)"
    )
    base = " ".join(s.text for s in samples if s.dataset == "awesome_prompts/other")
    lengths = sorted(len(s.text) for s in samples)
    prompts = {
        "fan message": "hey babe how was your day? did you get my tip?",
        "median evaluated prompt": base[: lengths[len(lengths) // 2]],
        "1,000-token prompt": base[: len(base) * 1000 // max(1, count_tokens(base))],
    }
    triggers = tuple(DEFAULT_CRITICAL_TRIGGERS["chatbot"])

    def per_call(function: Callable[[str], object], texts: list[str]) -> float:
        iterator = iter(texts * 5)
        # CPU time of this thread: other processes on the machine do not inflate it.
        best = min(
            timeit.repeat(
                lambda: function(next(iterator)),
                number=len(texts),
                repeat=5,
                timer=time.thread_time,
            )
        )
        return best / len(texts) * 1e6

    def run_classify(text: str) -> object:
        return classify(
            text,
            categories=categories,
            default_category=args.default_category,
            min_confidence=args.min_confidence,
        )

    print(
        f"{'prompt':42} {'complexity':>10} {'classify':>9} {'trigger':>8} {'all three':>10}"
        "   (trigger alone: cold; all three: one normalised window shared by the three)"
    )
    for name, prompt in prompts.items():
        tokens = count_tokens(prompt)
        variants = [f"{i} {prompt}" for i in range(2000)]

        def run_complexity(text: str, tokens: int = tokens) -> object:
            return estimate_complexity(text, token_count=tokens)

        def run_trigger(text: str) -> object:
            return find_trigger(text, triggers)

        def run_all(text: str) -> None:
            # The engine's path when the caller gives neither category nor complexity; the
            # three read the window that classify() normalised first.
            run_classify(text)
            run_complexity(text)
            run_trigger(text)

        timings = [per_call(f, variants) for f in (run_complexity, run_classify, run_trigger)]
        label = f"{name} ({tokens:,} tok, {len(prompt):,} ch)"
        print(
            f"{label:42} {timings[0]:10.1f} {timings[1]:9.1f} {timings[2]:8.1f}"
            f" {per_call(run_all, variants):10.1f}"
        )
    ascii_1k = prompts["1,000-token prompt"].encode("ascii", "ignore").decode()
    lower = per_call(str.lower, [ascii_1k])
    print(f"reference: str.lower() on the 1,000-token prompt (ASCII) takes {lower:.2f} us here")


def _family(category: str) -> str:
    return FAMILY.get(category, category)


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _auc(positives: list[float], negatives: list[float]) -> float:
    """Mann-Whitney probability that a positive outranks a negative (ties count half)."""
    ranked = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average_rank = (i + j + 1) / 2
        rank_sum += average_rank * sum(label for _, label in ranked[i:j])
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


if __name__ == "__main__":
    main()
