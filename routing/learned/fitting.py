"""The fits a training run is made of, as pure functions of matrices and labels.

Row weights (each source and label group weighs the square root of its size), folds that
hold whole sources out, the three logistic regressions (category over the 9 classes, and the
binary safety and needs-premium models) and their calibrations: the category softmax
temperature, the safety threshold held to a budget of benign rows flagged, and the Platt
scale of needs premium. No configuration and no I/O: routing.learned.training decides what
goes in and writes what comes out; evaluation reuses the same fits on its own folds.
"""

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from routing.learned.data import CATEGORIES


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


def sigmoid(x):
    """Return the logistic function of a score or an array of them."""
    return 1.0 / (1.0 + np.exp(-x))
