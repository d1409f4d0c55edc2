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

Here: what the router is compared with (the keyword classifier and score, the seeded matrix)
and the printed report. The figures are routing.learned.measures'; the evaluation-only data
sets are read by routing.learned.external_data.
"""

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routing.learned import data, training
from routing.learned.artifact_writer import TrainedRouter, write_artifact
from routing.learned.data import CATEGORIES
from routing.learned.external_data import MMLU_CATEGORIES as MMLU_CATEGORIES  # scripts/ too
from routing.learned.external_data import external_categories, hatecheck_benign, routellm_judged
from routing.learned.fitting import balanced_weights, binary_model, category_model
from routing.learned.measures import apgr, auroc, macro_f1, per_class_f1, pgr
from routing.learned.model import load_router

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- what the learned router is compared with ---------------------------------------------


def seeded_policy(router=None):
    """The seeded decision matrix (the brief's thresholds, the default keywords and triggers)
    as an engine policy, with the learned router or, without one, the keyword fallback."""

    from routing.defaults import DEFAULT_CLASSIFIER_KEYWORDS, DEFAULT_CRITICAL_TRIGGERS
    from routing.policy import CategoryRule, ModelSpec, Policy, Tier
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
    from routing.engine import RouteRequest, route
    from routing.policy import Tier

    decision = route(request=RouteRequest(text=text, prompt_tokens=len(text) // 4), policy=policy)
    return decision.tier is Tier.FULL


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


# --- the report ---------------------------------------------------------------------------


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
    weights = balanced_weights(labels, sources)
    predicted = np.empty(len(categorised), dtype=object)
    per_source = []
    for source in sorted(set(sources)):
        held = np.flatnonzero(sources == source)
        keep = np.flatnonzero(sources != source)
        w, b = category_model(x_cat[keep], labels[keep], weights[keep], run.config.category_c)
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
    weights = balanced_weights(unsafe, sources)
    scores = np.zeros(len(safety_rows))
    for source in sorted(set(sources)):
        held = np.flatnonzero(sources == source)
        keep = np.flatnonzero(sources != source)
        w, b = binary_model(x_safe[keep], unsafe[keep], weights[keep], run.config.safety_c)
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
        f"{auroc(scores, unsafe):.3f}"
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
        w, b = binary_model(x_out[~held], needs[~held], weights[~held], config.premium_c)
        scores = x_out[held] @ w + b
        base = np.array(
            [keyword_complexity(o.text) for o, h in zip(outcome_rows, held, strict=True) if h]
        )
        mask = our[held] if our[held].any() else np.ones(held.sum(), dtype=bool)
        print(
            f"  {source:24} left out: AUROC learned "
            f"{auroc(scores[mask], needs[held][mask]):.3f}"
            f" vs keyword score {auroc(base[mask], needs[held][mask]):.3f}"
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
            f"{auroc(learned, label):.3f} vs {auroc(old, label):.3f}, "
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


def _router_from(trained: TrainedRouter):
    """Load a freshly trained router through the artifact file, as production loads it."""
    with tempfile.TemporaryDirectory() as directory:
        path = write_artifact(trained, Path(directory))
        router = load_router(str(path))
        load_router.cache_clear()
    return router


if __name__ == "__main__":
    sys.exit(main())
