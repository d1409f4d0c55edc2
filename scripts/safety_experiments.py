"""Safety-head experiments for issue 17: held-out recall at 5% benign flagged, per variant.

Not part of the service or of train_router: a record of what was tried and how it was
measured, so a later attempt starts from the figures instead of from scratch.

Protocol (fast, CPU is scarce): the safety rows of train_router (the same data, vocabulary
rule and row weights), five folds of whole sources held out (training.source_folds, the
shipped seed). Each variant scores every row while its source is held out; the threshold is
the pooled held-out benign scores' 95% quantile, so every variant flags the same 5% of benign
rows and recall is comparable. "edgy" is the share of safe-but-edgy look-alikes flagged at
that threshold (the safety pairs' benign side and team_safety's benign rows).

    .venv/bin/python scripts/safety_experiments.py [--variants baseline skipgrams ...]
    # a convolution over the static word vectors needs torch (training time only):
    .venv/bin/python scripts/safety_experiments.py --dump /tmp/safety.npz
    /tmp/torch-venv/bin/python scripts/safety_cnn_experiment.py /tmp/safety.npz

Measured 2026-12-07 (host load average 7-8; make eval-router's leave-one-source-out gives
60.4% / 19.4% for the shipped model). The table was taken with evaluation.py's vocabulary
(outcome texts counted per pair); this script builds train_router's and prints baseline
0.904 / 0.599 / 0.194 and skip-bigrams 0.907 / 0.611 / 0.185:

| variant | AUROC | recall at 5% benign | edgy flagged |
|---|---|---|---|
| baseline: n-grams + meaning vector (shipped) | 0.906 | 0.602 | 0.194 |
| n-grams alone | 0.875 | 0.543 | 0.158 |
| + skip-bigrams (gap 1-2), scale 1 | 0.908 | 0.617 | 0.188 |
| + skip-bigrams, scale 0.5 | 0.909 | 0.617 | 0.192 |
| edgy look-alikes weighted 3x | 0.903 | 0.600 | 0.196 |
| C = 2 / C = 32 (shipped 8) | 0.908 / 0.900 | 0.600 / 0.590 | 0.197 / 0.189 |
| + per-dimension max and min of the word vectors | 0.891 | 0.544 | 0.195 |
| + pairwise products of the meaning vector's top 24 PCA axes | 0.902 | 0.580 | 0.194 |
| + max, top-3, share > 0 of words' safety pull (two-stage lexicon) | 0.907 | 0.603 | 0.205 |

What limits it: the edgy rate is mostly davidson's lexicon-hit tweets (26% flagged, 992 rows)
and JailbreakBench's benign twins (80%, 100 rows); with davidson held out, the model has never
seen a slur-heavy tweet either way, and ranks its hateful and its harmless tweets almost alike.
No linear variant moves recall more than 1.5 points: the bag (of n-grams or of word vectors)
is the limit, not the regulariser or the weights.
"""

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from routing.learned import data, training  # noqa: E402
from routing.learned.features import tokens  # noqa: E402
from routing.learned.meaning import load_word_vectors  # noqa: E402

WEAK_SOURCES = (
    "team_safety",
    "team_content_safety",
    "davidson_hate_offensive",
    "team_exam_formats",
    "jbb_artifacts_jailbreaks",
)
EDGY_SOURCES = ("davidson_hate_offensive", "team_safety", "nl2bash", "jbb_behaviors")
MAX_PIECES = 160  # word pieces per text given to the convolution (a chat message has ~40)


@dataclass
class SafetyData:
    texts: list[str]
    words: list[list[str]]
    unsafe: np.ndarray
    edgy: np.ndarray
    sources: np.ndarray
    weights: np.ndarray
    ngrams: sparse.csr_matrix
    meaning: np.ndarray


def load_safety_data(traindata: Path, evaldata: Path) -> SafetyData:
    """Return train_router's safety rows with the features the shipped safety head reads."""
    config = training.TrainingConfig()
    rows = data.labelled_texts(traindata=traindata, evaldata=evaldata)
    outcome_texts = sorted({o.text: o.source for o in data.outcomes(traindata=traindata)}.items())
    names, idf = training.build_vocabulary(
        [r.text for r in rows] + [text for text, _ in outcome_texts],
        [r.source for r in rows] + [source for _, source in outcome_texts],
        config,
    )
    safety_rows = [r for r in rows if r.unsafe is not None]
    texts = [r.text for r in safety_rows]
    words = [tokens(text) for text in texts]
    table = load_word_vectors(config.meaning_table)
    unsafe = np.array([r.unsafe for r in safety_rows])
    sources = np.array([r.source for r in safety_rows])
    return SafetyData(
        texts=texts,
        words=words,
        unsafe=unsafe,
        edgy=np.array([r.edgy for r in safety_rows]),
        sources=sources,
        weights=training.balanced_weights(unsafe, sources),
        ngrams=training.vectorize(texts, names, idf),
        meaning=np.array([table.mean(table.piece_ids(w)) for w in words], dtype=np.float32),
    )


def recall_at_benign_share(
    scores: np.ndarray, unsafe: np.ndarray, flagged: np.ndarray, benign_share: float = 0.05
) -> tuple[float, float, float]:
    """Return (cut, unsafe recall, share of `flagged` rows at or above the cut), the cut being
    the benign scores' (1 - benign_share) quantile: training.safety_threshold's rule, on raw
    scores rather than probabilities, so scores of any scale compare."""
    benign = np.sort(scores[~unsafe])
    cut = float(benign[min(len(benign) - 1, math.ceil((1 - benign_share) * len(benign)))])
    hit = scores >= cut
    return cut, float(hit[unsafe].mean()), float(hit[flagged].mean())


def held_out_scores(
    safety: SafetyData, x, *, c: float = 8.0, weights: np.ndarray | None = None
) -> np.ndarray:
    """Return each row's safety logit from a model fitted without its source's fold."""
    weights = safety.weights if weights is None else weights
    scores = np.zeros(len(safety.unsafe))
    config = training.TrainingConfig()
    for held in training.source_folds(list(safety.sources), 5, config.seed):
        keep = np.setdiff1d(np.arange(len(scores)), held)
        w, b = training.binary_model(x[keep], safety.unsafe[keep], weights[keep], c)
        scores[held] = x[held] @ w + b
    return scores


def report_line(name: str, scores: np.ndarray, safety: SafetyData) -> str:
    """Return one result line: AUROC, recall and edgy share at 5% benign, weak sources."""
    cut, recall, edgy = recall_at_benign_share(scores, safety.unsafe, safety.edgy)
    weak = ", ".join(
        f"{s} {np.mean(scores[(safety.sources == s) & safety.unsafe] >= cut):.2f}"
        for s in WEAK_SOURCES
    )
    look_alikes = ", ".join(
        f"{s} {np.mean(scores[(safety.sources == s) & safety.edgy] >= cut):.2f}"
        for s in EDGY_SOURCES
    )
    return (
        f"{name:44} AUROC {training.auroc(scores, safety.unsafe):.3f} recall {recall:.3f} "
        f"edgy {edgy:.3f}\n    unsafe caught: {weak}\n    edgy flagged: {look_alikes}"
    )


def feature_block(
    features: Sequence[list[str]], sources: np.ndarray, min_df: int = 3, min_sources: int = 2
) -> sparse.csr_matrix:
    """Return extra named features as (1 + log tf) x idf rows, L2-normalised, keeping only
    those at least min_sources sources use (train_router's rule)."""
    frequency: Counter[str] = Counter()
    used_by: dict[str, set[str]] = defaultdict(set)
    for names, source in zip(features, sources, strict=True):
        for name in set(names):
            frequency[name] += 1
            used_by[name].add(source)
    kept = sorted(n for n in frequency if frequency[n] >= min_df and len(used_by[n]) >= min_sources)
    column = {name: i for i, name in enumerate(kept)}
    idf = np.array([math.log((1 + len(features)) / (1 + frequency[n])) + 1 for n in kept])
    indptr, indices, values = [0], [], []
    for names in features:
        counts = Counter(column[n] for n in names if n in column)
        ids = sorted(counts)
        row = np.array([(1 + math.log(counts[i])) * idf[i] for i in ids])
        if len(row):
            row /= np.sqrt(row @ row)
        indices.extend(ids)
        values.extend(row.tolist())
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.array(values, dtype=np.float32), np.array(indices, dtype=np.int64), indptr),
        shape=(len(features), len(kept)),
    )


def _shipped(safety: SafetyData):
    return sparse.hstack([safety.ngrams, sparse.csr_matrix(safety.meaning)]).tocsr()


def _skipgrams(safety: SafetyData, scale: float):
    skips = [
        [f"{a}~{b}" for gap in (2, 3) for a, b in zip(w, w[gap:], strict=False)]
        for w in safety.words
    ]
    block = feature_block(skips, safety.sources) * scale
    return sparse.hstack([_shipped(safety), block]).tocsr()


def _weighted_edgy(safety: SafetyData, times: float) -> np.ndarray:
    weights = safety.weights * np.where(safety.edgy, times, 1.0)
    return weights * (len(weights) / weights.sum())


VARIANTS: dict[str, Callable[[SafetyData], np.ndarray]] = {
    "baseline": lambda s: held_out_scores(s, _shipped(s)),
    "ngrams_only": lambda s: held_out_scores(s, s.ngrams),
    "skipgrams": lambda s: held_out_scores(s, _skipgrams(s, 1.0)),
    "skipgrams_half": lambda s: held_out_scores(s, _skipgrams(s, 0.5)),
    "edgy_x3": lambda s: held_out_scores(s, _shipped(s), weights=_weighted_edgy(s, 3.0)),
    "c2": lambda s: held_out_scores(s, _shipped(s), c=2.0),
    "c32": lambda s: held_out_scores(s, _shipped(s), c=32.0),
}


def dump_for_convolution(safety: SafetyData, path: Path) -> None:
    """Write what scripts/safety_cnn_experiment.py reads: word-piece ids, labels, weights,
    folds and the shipped head's held-out logits (to combine with)."""
    table = load_word_vectors(training.TrainingConfig().meaning_table)
    pieces = np.full((len(safety.words), MAX_PIECES), -1, dtype=np.int64)
    for row, words in enumerate(safety.words):
        ids = table.piece_ids(words)[:MAX_PIECES]
        pieces[row, : len(ids)] = ids
    fold = np.zeros(len(safety.words), dtype=np.int64)
    seed = training.TrainingConfig().seed
    for number, held in enumerate(training.source_folds(list(safety.sources), 5, seed)):
        fold[held] = number
    np.savez(
        path,
        pieces=pieces,
        unsafe=safety.unsafe,
        weights=safety.weights,
        fold=fold,
        edgy=safety.edgy,
        sources=safety.sources,
        baseline=VARIANTS["baseline"](safety),
        vectors=table.vectors,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traindata", type=Path, default=REPO_ROOT.parent / "shared/traindata")
    parser.add_argument("--evaldata", type=Path, default=REPO_ROOT.parent / "shared/evaldata")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--dump", type=Path, help="write the convolution experiment's input")
    args = parser.parse_args(argv)
    safety = load_safety_data(args.traindata, args.evaldata)
    if args.dump:
        dump_for_convolution(safety, args.dump)
        return
    for name in args.variants:
        print(report_line(name, VARIANTS[name](safety), safety), flush=True)


if __name__ == "__main__":
    main()
