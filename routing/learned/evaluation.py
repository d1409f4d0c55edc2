"""Honest figures for the learned router, beside today's keyword classifier (`make eval-router`).

1. Category, leave-one-source-out: for each source, train on every other source and predict
   the one left out; per-class precision/recall/F1 and macro-F1 over the pooled predictions.
2. Category and safety on external data nobody trains on (../shared/evaldata: MMLU subjects
   with a mapping, GSM8K, HateCheck, awesome-chatgpt-prompts roles), with the shipped config.
3. Safety, leave-one-source-out: recall on unsafe rows and the share of benign rows flagged.
4. Needs premium: AUROC for "weak model fails where strong succeeds" and APGR, per data set
   left out of the outcome data, and on RouteLLM's MMLU and GSM8K flags (another model pair).
5. Speed of one decision (p50/p99) for a chat message and a 1,000-token prompt.

The vocabulary is built once from all rows (labels are never used for it), then each fold
fits only on its training rows.
"""

import argparse
import csv
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routing.learned import data, training
from routing.learned.data import CATEGORIES
from routing.learned.model import load_router

REPO_ROOT = Path(__file__).resolve().parents[2]
MMLU_CATEGORIES = {
    "marketing": "marketing",
    "public_relations": "marketing",
    "management": "strategy",
    "business_ethics": "strategy",
    "professional_law": "legal",
    "jurisprudence": "legal",
    "international_law": "legal",
    "college_computer_science": "code",
    "econometrics": "analytics",
    "high_school_statistics": "analytics",
}
# awesome-chatgpt-prompts roles that plainly belong to one router category; others are skipped.
AWESOME_ROLES = {
    "code": (
        "Ethereum Developer, Linux Terminal, JavaScript Console, UX/UI Developer, "
        "Cyber Security Specialist, SQL terminal, IT Architect, Python interpreter, "
        "Machine Learning Engineer, IT Expert, Fullstack Software Developer, Regex Generator, "
        "R programming Interpreter, StackOverflow Post, PHP Interpreter, "
        "Software Quality Assurance Tester, Senior Frontend Developer, Commit Message Generator, "
        "Python Interpreter"
    ),
    "marketing": (
        "SEO Prompt, Advertiser, Social Media Influencer, Social Media Manager, Salesperson"
    ),
    "analytics": (
        "Excel Sheet, Statistician, Accountant, Scientific Data Visualizer, Data Scientist"
    ),
    "strategy": "Chief Executive Officer, Product Manager, Startup Idea Generator, Logistician",
    "legal": "Legal Advisor, Startup Tech Lawyer",
    "chatbot": "Friend",
}
EXTERNAL_PER_SET = 300


@dataclass(frozen=True)
class Judged:
    """A prompt with weak/strong correctness flags (RouteLLM)."""

    text: str
    dataset: str
    weak: bool
    strong: bool


# --- metrics ------------------------------------------------------------------------------


def per_class_f1(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, tuple]:
    """Return {class: (precision, recall, f1, support)} over the classes present in truth."""
    scores = {}
    for label in sorted(set(truth)):
        tp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=False))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted, strict=False))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted, strict=False))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = (precision, recall, f1, tp + fn)
    return scores


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return statistics.mean(f1 for _, _, f1, _ in per_class_f1(truth, predicted).values())


def apgr(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, steps: int = 100) -> float:
    """Return the average share of the weak->strong quality gap recovered when the top x% by
    score go to the strong model, over x from 0 to 100% (0.5 is random)."""
    weak, strong = weak.astype(float), strong.astype(float)
    gap = strong.mean() - weak.mean()
    if gap <= 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    gains = np.concatenate([[0.0], np.cumsum((strong - weak)[order])])
    recovered = []
    for step in range(steps + 1):
        routed = round(step / steps * len(scores))
        recovered.append(gains[routed] / len(scores) / gap)
    return float(np.trapezoid(recovered, dx=1 / steps))


def pgr(premium: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    """Return the share of the weak->strong quality gap recovered by these choices."""
    gap = strong.mean() - weak.mean()
    quality = np.where(premium, strong, weak).mean()
    return float((quality - weak.mean()) / gap) if gap > 0 else float("nan")


def seeded_policy(router=None):
    """The seeded decision matrix (the brief's thresholds, the default keywords and triggers)
    as an engine policy, with the learned router or, without one, the keyword fallback."""

    from routing.defaults import DEFAULT_CLASSIFIER_KEYWORDS, DEFAULT_CRITICAL_TRIGGERS
    from routing.engine import CategoryRule, ModelSpec, Policy, Tier
    from routing.seed_data import DEFAULT_CATEGORIES, seeded_price_rows

    mini = ModelSpec("gpt-4o-mini", Tier.MINI, seeded_price_rows("gpt-4o-mini"))
    full = ModelSpec("gpt-4o", Tier.FULL, seeded_price_rows("gpt-4o"))
    rules = {
        c["slug"]: CategoryRule(
            slug=c["slug"],
            mini=mini,
            full=full,
            full_from=c["full_from_complexity"],
            always_full=c["always_full"],
            keywords=tuple(sorted(DEFAULT_CLASSIFIER_KEYWORDS.get(c["slug"], {}).items())),
            triggers=tuple(DEFAULT_CRITICAL_TRIGGERS.get(c["slug"], [])),
        )
        for c in DEFAULT_CATEGORIES
    }
    return Policy.build(
        version=1,
        categories=rules,
        default_category="chatbot",
        min_confidence=0.34,
        router=router,
        router_artifact=router.artifact_id if router else "",
    )


def _premium_choice(policy, text: str) -> bool:
    from routing.engine import RouteRequest, Tier, route

    decision = route(request=RouteRequest(text=text, prompt_tokens=len(text) // 4), policy=policy)
    return decision.tier is Tier.FULL


# --- external data ------------------------------------------------------------------------


def external_categories(evaldata: Path) -> list[tuple[str, str, str]]:
    """Return (dataset, text, category) rows from evaluation-only data sets, sampled."""
    rows: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path in sorted((evaldata / "routellm/mmlu_responses").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        if subject in MMLU_CATEGORIES:
            with path.open(newline="", encoding="utf-8") as handle:
                for row in csv.reader(handle):
                    if row[0] != "prompt":
                        rows[f"mmlu/{subject}"].append((row[0], MMLU_CATEGORIES[subject]))
    for judged in _gsm8k(evaldata):
        rows["gsm8k"].append((judged.text, "analytics"))
    with (evaldata / "moderation/hatecheck/test_suite_cases.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label_gold"] == "hateful":
                rows["hatecheck/hateful"].append((row["test_case"].strip(), "moderation"))
    role_category = {
        role.strip(): category
        for category, roles in AWESOME_ROLES.items()
        for role in roles.split(",")
    }
    with (evaldata / "awesome_chatgpt_prompts/prompts_2025-01-06.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["act"].strip() in role_category:
                rows["awesome_prompts"].append((row["prompt"], role_category[row["act"].strip()]))
    sampled = []
    for name in sorted(rows):
        picked = _sample(rows[name], EXTERNAL_PER_SET, name)
        sampled.extend((name, text, label) for text, label in picked)
    return sampled


def hatecheck_benign(evaldata: Path) -> list[str]:
    with (evaldata / "moderation/hatecheck/test_suite_cases.csv").open(newline="") as handle:
        return [
            r["test_case"].strip() for r in csv.DictReader(handle) if r["label_gold"] != "hateful"
        ]


def routellm_judged(evaldata: Path) -> list[Judged]:
    """Return MMLU (all subjects) and GSM8K prompts with Mixtral (weak) / GPT-4 (strong) flags."""
    found = []
    for path in sorted((evaldata / "routellm/mmlu_responses").glob("mmlu_*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            weak = header.index("mistralai/Mixtral-8x7B-Instruct-v0.1")
            strong = header.index("gpt-4-1106-preview")
            for row in reader:
                found.append(Judged(row[0], "mmlu", row[weak] == "True", row[strong] == "True"))
    return found + list(_gsm8k(evaldata))


def _gsm8k(evaldata: Path):
    with (evaldata / "routellm/gsm8k_gsm8k_responses.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            yield Judged(
                row["prompt"],
                "gsm8k",
                row["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True",
                row["gpt-4-1106-preview"] == "True",
            )


def _sample(items: list, count: int, name: str) -> list:
    if len(items) <= count:
        return items
    return random.Random(f"eval:{name}").sample(items, count)  # noqa: S311 (seeded)


# --- the report ---------------------------------------------------------------------------


def keyword_classifier() -> Callable[[str], str]:
    """Return today's keyword classifier with its seeded terms, as a text -> category function."""
    from routing.classifier import CategoryKeywords, classify
    from routing.defaults import DEFAULT_CLASSIFIER_KEYWORDS

    keywords = tuple(
        CategoryKeywords(slug=s, keywords=k) for s, k in DEFAULT_CLASSIFIER_KEYWORDS.items()
    )
    return lambda text: (
        classify(
            text, categories=keywords, default_category="chatbot", min_confidence=0.34
        ).category
    )


def keyword_complexity(text: str) -> float:
    from routing.complexity import estimate_complexity

    return estimate_complexity(text, token_count=len(text) // 4).score


def print_f1_table(title: str, truth: list[str], learned: list[str], keyword: list[str]) -> None:
    print(f"\n{title}")
    print(f"{'category':16}{'n':>6}   {'learned P / R / F1':>20}   {'keywords P / R / F1':>20}")
    ours, theirs = per_class_f1(truth, learned), per_class_f1(truth, keyword)
    for label in sorted(ours):
        p, r, f, n = ours[label]
        kp, kr, kf, _ = theirs[label]
        print(f"{label:16}{n:6}   {p:6.2f} {r:6.2f} {f:6.2f}   {kp:6.2f} {kr:6.2f} {kf:6.2f}")
    print(
        f"{'macro-F1':16}{len(truth):6}   {macro_f1(truth, learned):20.3f}   "
        f"{macro_f1(truth, keyword):20.3f}   accuracy "
        f"{np.mean(np.array(truth) == np.array(learned)):.3f} vs "
        f"{np.mean(np.array(truth) == np.array(keyword)):.3f}"
    )


@dataclass
class _Run:
    """What every section reads: the data, the shared vocabulary, the shipped-config router."""

    config: training.TrainingConfig
    rows: list
    outcome_rows: list
    names: list[str]
    idf: np.ndarray
    keywords: Callable[[str], str]
    router: object = None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traindata", type=Path, default=REPO_ROOT.parent / "shared/traindata")
    parser.add_argument("--evaldata", type=Path, default=REPO_ROOT.parent / "shared/evaldata")
    parser.add_argument("--skip-loso", action="store_true", help="only the external figures")
    args = parser.parse_args(argv)
    started = time.monotonic()
    config = training.TrainingConfig()
    rows = data.labelled_texts(traindata=args.traindata, evaldata=args.evaldata)
    outcome_rows = data.outcomes(traindata=args.traindata)
    texts = [r.text for r in rows] + [o.text for o in outcome_rows]
    sources = [r.source for r in rows] + [o.source for o in outcome_rows]
    names, idf = training.build_vocabulary(texts, sources, config)
    print(
        f"vocabulary {len(names):,} features from {len(texts):,} rows "
        f"({time.monotonic() - started:.0f} s)"
    )
    run = _Run(config, rows, outcome_rows, names, idf, keyword_classifier())
    if not args.skip_loso:
        _category_left_out(run)
    run.router = _router_from(training.train(rows, outcome_rows, config))
    _category_external(run, args.evaldata)
    if not args.skip_loso:
        _safety_left_out(run)
    _needs_premium(run, args.evaldata)
    _speed(run)
    print(f"\ntotal {time.monotonic() - started:.0f} s")


def _category_left_out(run: _Run) -> None:
    categorised = [r for r in run.rows if r.category is not None]
    x_cat = training.text_matrix([r.text for r in categorised], run.names, run.idf, run.config)
    labels = np.array([r.category for r in categorised])
    sources = np.array([r.source for r in categorised])
    weights = training.balanced_weights(labels, sources)
    predicted = np.empty(len(categorised), dtype=object)
    per_source = []
    for source in sorted(set(sources)):
        held = np.flatnonzero(sources == source)
        keep = np.flatnonzero(sources != source)
        w, b = training.category_model(
            x_cat[keep], labels[keep], weights[keep], run.config.category_c
        )
        predicted[held] = [CATEGORIES[i] for i in (x_cat[held] @ w + b).argmax(axis=1)]
        accuracy = float(np.mean(predicted[held] == labels[held]))
        per_source.append((source, len(held), Counter(labels[held]).most_common(1)[0][0], accuracy))
    print("\n(1) CATEGORY, leave-one-source-out (accuracy on each source when it is left out)")
    for source, count, label, accuracy in per_source:
        print(f"  {source:34}{count:6}  {label:15}{accuracy:7.1%}")
    keyword_predicted = [run.keywords(r.text) for r in categorised]
    print_f1_table(
        "pooled leave-one-source-out", labels.tolist(), predicted.tolist(), keyword_predicted
    )


def _category_external(run: _Run, evaldata: Path) -> None:
    external = external_categories(evaldata)
    truth = [label for _, _, label in external]
    predictions = [run.router.predict(text) for _, text, _ in external]
    learned = [p.category if not p.unsafe else "moderation" for p in predictions]
    print_f1_table(
        "(2) CATEGORY on external evaluation data (trained on all training rows)",
        truth,
        learned,
        [run.keywords(text) for _, text, _ in external],
    )
    by_set = defaultdict(list)
    for (name, _, label), guess in zip(external, learned, strict=True):
        by_set[name].append(guess == label)
    print("  " + ", ".join(f"{name} {np.mean(hits):.0%}" for name, hits in sorted(by_set.items())))
    hateful = [
        p.unsafe or p.category == "moderation"
        for (name, _, _), p in zip(external, predictions, strict=True)
        if name == "hatecheck/hateful"
    ]
    benign = [run.router.predict(text) for text in hatecheck_benign(evaldata)]
    print(
        f"  moderation recall on HateCheck hateful {np.mean(hateful):.1%}; HateCheck non-hateful "
        f"flagged {np.mean([p.unsafe or p.category == 'moderation' for p in benign]):.1%} "
        f"(many of these name a group or quote a slur to counter it)"
    )


def _safety_left_out(run: _Run) -> None:
    safety_rows = [r for r in run.rows if r.unsafe is not None]
    x_safe = training.text_matrix([r.text for r in safety_rows], run.names, run.idf, run.config)
    unsafe = np.array([r.unsafe for r in safety_rows])
    sources = np.array([r.source for r in safety_rows])
    weights = training.balanced_weights(unsafe, sources)
    scores = np.zeros(len(safety_rows))
    for source in sorted(set(sources)):
        held = np.flatnonzero(sources == source)
        keep = np.flatnonzero(sources != source)
        w, b = training.binary_model(x_safe[keep], unsafe[keep], weights[keep], run.config.safety_c)
        scores[held] = 1 / (1 + np.exp(-(x_safe[held] @ w + b)))
    threshold = run.router.safety_threshold
    print(f"\n(3) SAFETY, leave-one-source-out, at the shipped threshold {threshold:.3f}")
    for source in sorted(set(sources)):
        for flag, name in ((True, "unsafe recall"), (False, "benign flagged")):
            part = (sources == source) & (unsafe == flag)
            if part.any():
                flagged = np.mean(scores[part] >= threshold)
                print(f"  {source:34}{part.sum():6}  {name:15}{flagged:7.1%}")
    edgy = np.array([r.edgy for r in safety_rows])
    print(
        f"  pooled: unsafe recall {np.mean(scores[unsafe] >= threshold):.1%}, benign flagged "
        f"{np.mean(scores[~unsafe] >= threshold):.1%}, safe-but-edgy flagged "
        f"{np.mean(scores[edgy] >= threshold):.1%} (n={edgy.sum()}), AUROC "
        f"{training.auroc(scores, unsafe):.3f}"
    )


def _needs_premium(run: _Run, evaldata: Path) -> None:
    print("\n(4) NEEDS PREMIUM")
    outcome_rows, config = run.outcome_rows, run.config
    x_out, _, _ = training.premium_matrix(
        [o.text for o in outcome_rows], run.names, run.idf, config
    )
    needs = np.array([o.needs_premium for o in outcome_rows])
    our = np.array([o.our_pair for o in outcome_rows])
    sources = np.array([o.source.split("/")[0] for o in outcome_rows])
    weights = np.where(our, config.our_pair_weight, 1.0)
    for source in sorted(set(sources)):
        held = sources == source
        w, b = training.binary_model(x_out[~held], needs[~held], weights[~held], config.premium_c)
        scores = x_out[held] @ w + b
        base = np.array(
            [keyword_complexity(o.text) for o, h in zip(outcome_rows, held, strict=True) if h]
        )
        mask = our[held] if our[held].any() else np.ones(held.sum(), dtype=bool)
        print(
            f"  {source:24} left out: AUROC learned "
            f"{training.auroc(scores[mask], needs[held][mask]):.3f}"
            f" vs keyword score {training.auroc(base[mask], needs[held][mask]):.3f}"
            f" ({'our pair' if our[held].any() else 'all pairs'}, n={mask.sum()})"
        )
    judged = routellm_judged(evaldata)
    for name in ("mmlu", "gsm8k", None):
        part = [j for j in judged if name is None or j.dataset == name]
        learned = np.array([run.router.predict(j.text).needs_premium for j in part])
        old = np.array([keyword_complexity(j.text) for j in part])
        weak = np.array([j.weak for j in part])
        strong = np.array([j.strong for j in part])
        label = ~weak & strong
        print(
            f"  RouteLLM {name or 'mmlu+gsm8k':10} n={len(part):6}: AUROC "
            f"{training.auroc(learned, label):.3f} vs {training.auroc(old, label):.3f}, "
            f"APGR {apgr(learned, weak, strong):.3f} vs {apgr(old, weak, strong):.3f}"
        )
    weak = np.array([j.weak for j in judged])
    strong = np.array([j.strong for j in judged])
    for engine, router in (("learned router", run.router), ("keywords", None)):
        policy = seeded_policy(router)
        premium = np.array([_premium_choice(policy, j.text) for j in judged])
        print(
            f"  the seeded matrix's own choices on RouteLLM mmlu+gsm8k ({engine}): "
            f"{premium.mean():.1%} premium, PGR {pgr(premium, weak, strong):.3f}"
        )


def _speed(run: _Run) -> None:
    print("\n(5) SPEED of router.predict (one process, warm; make bench-engine: distinct prompts)")
    chat = "hey babe how was your day? miss u"
    long_prompt = " ".join(r.text for r in run.rows[:200])[:4400]
    for name, text in (("chat message", chat), ("1,000-token prompt", long_prompt)):
        timings = []
        for _ in range(2000):
            start = time.perf_counter()
            run.router.predict(text)
            timings.append(time.perf_counter() - start)
        timings.sort()
        print(f"  {name:20} p50 {timings[1000] * 1e6:6.0f} us   p99 {timings[1980] * 1e6:6.0f} us")


def _router_from(trained: training.TrainedRouter):
    """Load a freshly trained router through the artifact file, as production loads it."""
    with tempfile.TemporaryDirectory() as directory:
        path = training.write_artifact(trained, Path(directory))
        router = load_router(str(path))
        load_router.cache_clear()
    return router


if __name__ == "__main__":
    sys.exit(main())
