"""Fit the router's three models and write them as one versioned artifact with a model card.

Deterministic: rows are sorted, folds come from a seeded shuffle of the sources, and the
solver (lbfgs) has no randomness. What generalises to prompts from elsewhere matters more
than the fit on our own data, so:
- a feature enters the vocabulary only if at least `min_sources` sources use it: a word one
  data set alone uses is that data set's style, not its category;
- each (source, label) group weighs the square root of its size, then classes are balanced,
  so no large source decides what a class looks like;
- the calibration (category temperature, safety threshold, needs-premium scaling) is fitted
  on out-of-source predictions: each fold holds whole sources out, as production will.
"""

import hashlib
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from routing.learned.data import CATEGORIES, LabelledText, Outcome, Verdict
from routing.learned.features import (
    FEATURES_VERSION,
    SIGNAL_NAMES,
    signal_values,
    text_features,
    tokens,
)
from routing.learned.meaning import load_word_vectors
from routing.learned.model import ARTIFACT_FORMAT
from routing.learned.vectorizer import feature_hash, feature_vector


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 20261206
    min_df: int = 3
    min_sources: int = 2
    max_features: int = 200_000
    category_c: float = 8.0
    safety_c: float = 8.0
    premium_c: float = 0.1
    # Standardised signals enter the needs-premium fit at this scale, against L2-normalised
    # n-gram vectors: a smaller value regularises them harder.
    signal_scale: float = 0.3
    # What the needs-premium model reads. On data sets left out, n-grams and refitted signal
    # weights ranked prompts worse than the hand-made score alone (make eval-router, section
    # 4), so by default it calibrates that score; verdicts from our own traffic may change it.
    premium_ngrams: bool = False
    premium_signals: tuple[str, ...] = ("signal:score",)
    verdict_weight: float = 5.0  # a judged request of our own traffic against a public row
    calibration_folds: int = 5
    max_benign_flagged: float = 0.05  # the safety threshold's budget of benign rows flagged
    our_pair_weight: float = 3.0
    # The static word vectors (routing/learned/vectors/<name>.npz) the category and safety
    # models also read, and their scale against the n-gram vector ("" leaves them out). On
    # five folds of whole sources held out they raised category macro-F1 0.585 -> 0.639 and
    # safety AUROC 0.816 -> 0.861; scale 2 was no better than 1.
    meaning_table: str = "minilm-l6-m2v256"
    meaning_scale: float = 1.0


@dataclass
class TrainedRouter:
    feature_names: list[str]
    idf: np.ndarray
    category_weights: np.ndarray
    category_bias: np.ndarray
    safety_weights: np.ndarray
    premium_weights: np.ndarray
    premium_signal_weights: np.ndarray
    signal_mean: np.ndarray
    signal_scale: np.ndarray
    meaning_weights: np.ndarray | None = None  # (dimensions, 9 classes + safety)
    card: dict = field(default_factory=dict)


# --- vocabulary and vectors ---------------------------------------------------------------


def build_vocabulary(
    texts: Sequence[str], sources: Sequence[str], config: TrainingConfig
) -> tuple[list[str], np.ndarray]:
    """Return the kept feature names (sorted) and their smoothed idf."""
    document_frequency: Counter[str] = Counter()
    used_by: dict[str, set[str]] = defaultdict(set)
    for text, source in zip(texts, sources, strict=False):
        for name in set(text_features(text)):
            document_frequency[name] += 1
            if len(used_by[name]) < config.min_sources:
                used_by[name].add(source)
    kept = [
        name
        for name, count in document_frequency.items()
        if count >= config.min_df and len(used_by[name]) >= config.min_sources
    ]
    kept.sort(key=lambda name: (-document_frequency[name], name))
    names = sorted(kept[: config.max_features])
    total = len(texts)
    idf = np.array(
        [math.log((1 + total) / (1 + document_frequency[name])) + 1.0 for name in names],
        dtype=np.float32,
    )
    return names, idf


def vectorize(texts: Sequence[str], names: Sequence[str], idf: np.ndarray) -> sparse.csr_matrix:
    """Return the texts as rows of the same vectors the runtime model computes."""
    vocabulary = {name: i for i, name in enumerate(names)}
    indptr, indices, data = [0], [], []
    for text in texts:
        ids, values = feature_vector(text, vocabulary, idf)
        indices.extend(ids.tolist())
        data.extend(values.tolist())
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.array(data, dtype=np.float32), np.array(indices, dtype=np.int64), indptr),
        shape=(len(texts), len(names)),
    )


def text_matrix(
    texts: Sequence[str], names: Sequence[str], idf: np.ndarray, config: TrainingConfig
) -> sparse.csr_matrix:
    """Return what the category and safety models read: the n-gram vectors, then (when the
    config names a table) each text's meaning vector x config.meaning_scale."""
    ngrams = vectorize(texts, names, idf)
    if not config.meaning_table:
        return ngrams
    table = load_word_vectors(config.meaning_table)
    meaning = np.array([table.mean(table.piece_ids(tokens(text))) for text in texts])
    meaning = meaning.reshape(len(texts), table.dimensions) * config.meaning_scale
    return sparse.hstack([ngrams, sparse.csr_matrix(meaning, dtype=np.float32)]).tocsr()


def balanced_weights(labels: Sequence, sources: Sequence[str]) -> np.ndarray:
    """Return row weights: each (source, label) group weighs sqrt(size), each label the same."""
    group_size = Counter(zip(sources, labels, strict=False))
    weights = np.array(
        [1.0 / math.sqrt(group_size[key]) for key in zip(sources, labels, strict=False)]
    )
    label_total: dict = defaultdict(float)
    for label, weight in zip(labels, weights, strict=False):
        label_total[label] += weight
    weights = np.array([w / label_total[label] for label, w in zip(labels, weights, strict=False)])
    return weights * (len(weights) / weights.sum())


def source_folds(sources: Sequence[str], folds: int, seed: int) -> list[np.ndarray]:
    """Return, per fold, the row indices of the sources it holds out."""
    names = sorted(set(sources))
    random.Random(f"{seed}:folds").shuffle(names)  # noqa: S311 (seeded folds)
    fold_of = {name: i % folds for i, name in enumerate(names)}
    by_fold: list[list[int]] = [[] for _ in range(folds)]
    for row, source in enumerate(sources):
        by_fold[fold_of[source]].append(row)
    return [np.array(rows, dtype=np.int64) for rows in by_fold if rows]


def _fit(x, y, weights, c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=2000, tol=1e-4)
    model.fit(x, y, sample_weight=weights)
    return model


# --- the three models ---------------------------------------------------------------------


def category_model(x, labels: np.ndarray, weights: np.ndarray, c: float):
    """Return (weights (features, 9), bias (9,)) with classes in CATEGORIES order."""
    model = _fit(x, labels, weights, c)
    coef = np.zeros((x.shape[1], len(CATEGORIES)), dtype=np.float32)
    bias = np.full(len(CATEGORIES), -30.0, dtype=np.float32)  # a class with no rows: never
    if len(model.classes_) == 2:  # sklearn keeps one row: the second class against the first
        coef[:, CATEGORIES.index(model.classes_[1])] = model.coef_[0]
        bias[CATEGORIES.index(model.classes_[1])] = model.intercept_[0]
        bias[CATEGORIES.index(model.classes_[0])] = 0.0
        return coef, bias
    for column, label in enumerate(model.classes_):
        coef[:, CATEGORIES.index(label)] = model.coef_[column]
        bias[CATEGORIES.index(label)] = model.intercept_[column]
    return coef, bias


def binary_model(x, labels: np.ndarray, weights: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Return (weights, bias) of a logistic regression for the positive class."""
    model = _fit(x, labels.astype(int), weights, c)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """Return the softmax temperature with the lowest log loss on held-out logits."""
    best, best_loss = 1.0, math.inf
    for temperature in np.arange(0.5, 6.01, 0.1):
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_p = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        loss = -log_p[np.arange(len(truth)), truth].mean()
        if loss < best_loss:
            best, best_loss = float(temperature), loss
    return round(best, 2)


def safety_threshold(scores: np.ndarray, unsafe: np.ndarray, max_flagged: float) -> float:
    """Return the lowest probability threshold that flags at most max_flagged of benign rows."""
    benign = np.sort(scores[~unsafe])
    if not len(benign):
        return 0.5
    # The (1 - max_flagged) quantile of benign scores: above it, at most that share.
    position = min(len(benign) - 1, int(math.ceil((1 - max_flagged) * len(benign))))
    return float(min(0.99, max(0.05, benign[position])))


def platt_scale(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Return (a, b) so that sigmoid(a * score + b) is calibrated on held-out scores."""
    model = LogisticRegression(C=1e4, max_iter=1000)
    model.fit(scores.reshape(-1, 1), labels.astype(int), sample_weight=weights)
    return float(model.coef_[0][0]), float(model.intercept_[0])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- the whole training run ---------------------------------------------------------------


def train(
    rows: Sequence[LabelledText],
    outcome_rows: Sequence[Outcome],
    config: TrainingConfig,
    verdicts: Sequence[Verdict] = (),
) -> TrainedRouter:
    """Fit vocabulary, the three models and their calibration; return them with a card.
    Verdicts of our own traffic join the needs-premium fit (weighted), as one more source."""
    rows = sorted(rows, key=lambda r: (r.source, r.text))
    outcome_rows = sorted(outcome_rows, key=lambda r: (r.source, r.prompt_key, r.text))
    texts = [r.text for r in rows] + sorted({o.text for o in outcome_rows})
    sources = [r.source for r in rows] + [
        o.source for o in sorted({o.text: o for o in outcome_rows}.values(), key=lambda o: o.text)
    ]
    names, idf = build_vocabulary(texts, sources, config)

    categorised = [r for r in rows if r.category is not None]
    x_cat = text_matrix([r.text for r in categorised], names, idf, config)
    cat_labels = np.array([r.category for r in categorised])
    cat_sources = [r.source for r in categorised]
    cat_weights = balanced_weights(cat_labels, cat_sources)
    category_weights, category_bias = category_model(
        x_cat, cat_labels, cat_weights, config.category_c
    )

    safety_rows = [r for r in rows if r.unsafe is not None]
    x_safe = text_matrix([r.text for r in safety_rows], names, idf, config)
    unsafe = np.array([r.unsafe for r in safety_rows])
    safe_sources = [r.source for r in safety_rows]
    safe_weights = balanced_weights(unsafe, safe_sources)
    safety_weights, safety_bias = binary_model(x_safe, unsafe, safe_weights, config.safety_c)

    x_out, signal_mean, signal_scale = premium_matrix(
        [o.text for o in outcome_rows], names, idf, config
    )
    needs = np.array([o.needs_premium for o in outcome_rows])
    out_weights = np.array([config.our_pair_weight if o.our_pair else 1.0 for o in outcome_rows])
    out_sources = [o.source.split("/")[0] + "/" + o.source for o in outcome_rows]
    if verdicts:
        x_verdicts = verdict_matrix(verdicts, names, signal_mean, signal_scale, config)
        x_out = sparse.vstack([x_out, x_verdicts]).tocsr()
        needs = np.concatenate([needs, [v.needs_premium for v in verdicts]])
        out_weights = np.concatenate([out_weights, np.full(len(verdicts), config.verdict_weight)])
        out_sources += ["our_traffic"] * len(verdicts)
    premium_all, premium_bias = binary_model(x_out, needs, out_weights, config.premium_c)
    premium_weights, premium_signal_weights = premium_all[: len(names)], premium_all[len(names) :]

    # Calibration on out-of-source predictions.
    held_logits = np.zeros((len(categorised), len(CATEGORIES)))
    for held in source_folds(cat_sources, config.calibration_folds, config.seed):
        keep = np.setdiff1d(np.arange(len(categorised)), held)
        w, b = category_model(x_cat[keep], cat_labels[keep], cat_weights[keep], config.category_c)
        held_logits[held] = x_cat[held] @ w + b
    truth = np.array([CATEGORIES.index(label) for label in cat_labels])
    temperature = fit_temperature(held_logits, truth)

    held_safety = np.zeros(len(safety_rows))
    for held in source_folds(safe_sources, config.calibration_folds, config.seed):
        keep = np.setdiff1d(np.arange(len(safety_rows)), held)
        w, b = binary_model(x_safe[keep], unsafe[keep], safe_weights[keep], config.safety_c)
        held_safety[held] = _sigmoid(x_safe[held] @ w + b)
    threshold = safety_threshold(held_safety, unsafe, config.max_benign_flagged)

    held_premium = np.zeros(len(needs))
    for held in source_folds(out_sources, config.calibration_folds, config.seed):
        keep = np.setdiff1d(np.arange(len(needs)), held)
        w, b = binary_model(x_out[keep], needs[keep], out_weights[keep], config.premium_c)
        held_premium[held] = x_out[held] @ w + b
    scale = platt_scale(held_premium, needs, out_weights)

    held_best = held_logits.argmax(axis=1)
    meaning_weights, meaning_card = None, None
    if config.meaning_table:
        # The runtime reads the unit meaning vector: the scale moves into its weights.
        meaning_weights = np.hstack(
            [category_weights[len(names) :], safety_weights[len(names) :, None]]
        ) * np.float32(config.meaning_scale)
        category_weights = category_weights[: len(names)]
        safety_weights = safety_weights[: len(names)]
        digest = load_word_vectors(config.meaning_table).digest
        meaning_card = {"table": config.meaning_table, "digest": digest}
    card = {
        "format": ARTIFACT_FORMAT,
        "features": FEATURES_VERSION,
        "classes": list(CATEGORIES),
        "category_temperature": temperature,
        "safety_bias": safety_bias,
        "safety_threshold": round(threshold, 4),
        "premium_bias": premium_bias,
        "premium_scale": [round(scale[0], 6), round(scale[1], 6)],
        "meaning": meaning_card,
        "config": asdict(config),
        "data": {
            "category_rows": dict(sorted(Counter(cat_labels.tolist()).items())),
            "category_sources": dict(sorted(Counter(cat_sources).items())),
            "safety_rows": {"unsafe": int(unsafe.sum()), "benign": int((~unsafe).sum())},
            "outcome_rows": len(outcome_rows),
            "verdict_rows": len(verdicts),
            "outcome_prompts": len({o.prompt_key for o in outcome_rows}),
            "vocabulary": len(names),
        },
        "held_out_metrics": {
            "category_accuracy_out_of_source": round(float((held_best == truth).mean()), 4),
            "safety_recall_at_threshold": round(
                float((held_safety[unsafe] >= threshold).mean()), 4
            ),
            "safety_benign_flagged_at_threshold": round(
                float((held_safety[~unsafe] >= threshold).mean()), 4
            ),
            "needs_premium_auroc_out_of_source": round(auroc(held_premium, needs), 4),
        },
    }
    return TrainedRouter(
        feature_names=names,
        idf=idf,
        category_weights=category_weights,
        category_bias=category_bias,
        safety_weights=safety_weights,
        premium_weights=premium_weights,
        premium_signal_weights=premium_signal_weights,
        signal_mean=signal_mean,
        signal_scale=signal_scale,
        meaning_weights=meaning_weights,
        card=card,
    )


def premium_matrix(texts: Sequence[str], names: Sequence[str], idf: np.ndarray, config):
    """Return the needs-premium model's input: n-gram vectors (zero columns when the config
    leaves them out) and the standardised signals x config.signal_scale; with the mean and
    divisor that turn a raw signal into its column."""
    signals = np.array([signal_values(text)[0] for text in texts], dtype=np.float64)
    mean = signals.mean(axis=0)
    divisor = (signals.std(axis=0) + 1e-6) / config.signal_scale
    used = np.array([name in config.premium_signals for name in SIGNAL_NAMES])
    columns = sparse.csr_matrix((signals - mean) / divisor * used)
    if config.premium_ngrams:
        ngrams = vectorize(texts, names, idf)
    else:
        ngrams = sparse.csr_matrix((len(texts), len(names)), dtype=np.float32)
    matrix = sparse.hstack([ngrams, columns]).tocsr()
    return matrix, mean.astype(np.float32), divisor.astype(np.float32)


def verdict_matrix(
    verdicts: Sequence[Verdict],
    names: Sequence[str],
    signal_mean: np.ndarray,
    signal_divisor: np.ndarray,
    config: TrainingConfig,
) -> sparse.csr_matrix:
    """Return stored verdicts as rows of the needs-premium input: their hashed n-grams mapped
    onto this vocabulary (those it lacks are dropped), their signals standardised alike."""
    column_of = {feature_hash(name): i for i, name in enumerate(names)}
    used = np.array([name in config.premium_signals for name in SIGNAL_NAMES])
    indptr, indices, data = [0], [], []
    for verdict in verdicts:
        if config.premium_ngrams:
            for digest, weight in sorted(verdict.ngrams.items()):
                if digest in column_of:
                    indices.append(column_of[digest])
                    data.append(weight)
        signals = np.zeros(len(SIGNAL_NAMES))
        signals[: len(verdict.signals)] = verdict.signals[: len(SIGNAL_NAMES)]
        for offset, value in enumerate((signals - signal_mean) / signal_divisor * used):
            if value:
                indices.append(len(names) + offset)
                data.append(float(value))
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.array(data, dtype=np.float32), np.array(indices, dtype=np.int64), indptr),
        shape=(len(verdicts), len(names) + len(SIGNAL_NAMES)),
    )


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Return the area under the ROC curve (ties count half); 0.5 when one class is absent."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if not positives or not negatives:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = np.asarray(scores)[order]
    # Average ranks over ties.
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def write_artifact(trained: TrainedRouter, directory: Path, *, now: datetime | None = None) -> Path:
    """Write router-<date>-<hash>.npz and its model card; return the artifact's path."""
    arrays = {
        "feature_names": np.array("\n".join(trained.feature_names)),
        "idf": trained.idf,
        "category_weights": trained.category_weights.astype(np.float32),
        "category_bias": trained.category_bias.astype(np.float32),
        "safety_weights": trained.safety_weights.astype(np.float32),
        "premium_weights": trained.premium_weights.astype(np.float32),
        "premium_signal_weights": trained.premium_signal_weights.astype(np.float32),
        "signal_mean": trained.signal_mean,
        "signal_scale": trained.signal_scale,
    }
    if trained.meaning_weights is not None:
        arrays["meaning_weights"] = trained.meaning_weights.astype(np.float32)
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    digest.update(json.dumps(trained.card, sort_keys=True).encode())
    now = now or datetime.now(UTC)
    artifact_id = f"router-{now:%Y%m%d}-{digest.hexdigest()[:8]}"
    card = {
        **trained.card,
        "artifact_id": artifact_id,
        "trained_at": now.isoformat(timespec="seconds"),
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{artifact_id}.npz"
    np.savez_compressed(path, **arrays, card=np.array(json.dumps(card, sort_keys=True)))
    (directory / f"{artifact_id}.md").write_text(model_card(card), encoding="utf-8")
    return path


def model_card(card: dict) -> str:
    """Return the artifact's model card as Markdown."""
    data, metrics = card["data"], card["held_out_metrics"]
    lines = [
        f"# Router model card: {card['artifact_id']}",
        "",
        f"Trained {card['trained_at']} by `python manage.py train_router` (seed "
        f"{card['config']['seed']}), features `{card['features']}`, vocabulary "
        f"{data['vocabulary']:,} n-grams used by at least {card['config']['min_sources']} sources"
        + (
            f", and the meaning vector of `{card['meaning']['table']}` (static word vectors "
            "distilled from all-MiniLM-L6-v2, Apache-2.0)."
            if card.get("meaning")
            else "."
        ),
        "",
        "## Data",
        "",
        "| category | rows |",
        "|---|---|",
        *(f"| {name} | {count:,} |" for name, count in data["category_rows"].items()),
        "",
        f"Safety rows: {data['safety_rows']['unsafe']:,} unsafe, {data['safety_rows']['benign']:,} "
        f"benign. Needs-premium rows: {data['outcome_rows']:,} (prompt x model pair) over "
        f"{data['outcome_prompts']:,} prompts, and {data.get('verdict_rows', 0):,} shadow "
        f"verdicts of our own traffic; it reads {', '.join(card['config']['premium_signals'])}"
        f"{' and the n-grams' if card['config']['premium_ngrams'] else ''}.",
        "",
        "Sources: " + ", ".join(f"{s} {n:,}" for s, n in data["category_sources"].items()) + ".",
        "",
        "## Calibration (fitted on out-of-source predictions)",
        "",
        f"- category softmax temperature {card['category_temperature']}",
        f"- safety threshold {card['safety_threshold']} (at most "
        f"{card['config']['max_benign_flagged']:.0%} of held-out benign rows flagged)",
        f"- needs-premium Platt scale {card['premium_scale']}",
        "",
        "## Held-out figures (whole sources held out, 5 folds)",
        "",
        *(f"- {name}: {value}" for name, value in metrics.items()),
        "",
        "`make eval-router` gives the full leave-one-source-out report.",
        "",
    ]
    return "\n".join(lines)
