"""The figures the learned router is judged by, as pure functions of labels and scores.

Per-class precision, recall and F1 with their macro mean (category), the area under the ROC
curve (safety, and needs premium against "the weak model failed where the strong one
succeeded"), and RouteLLM's quality-gap measures: APGR over every share routed to the strong
model, PGR for one set of choices. Training writes AUROC into the model card; `make
eval-router` (routing.learned.evaluation) prints all of them. numpy only, no I/O.
"""

import statistics
from collections.abc import Sequence

import numpy as np


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
