"""Why the router chose: the few features that moved each model's score most.

Each model's score is a sum of per-feature parts (n-grams, each word's share of the meaning
vector, and for needs premium the hand-made signals), which Router.predict computes anyway.
The explanation ranks those parts in the direction of the answer and names only the top
EXPLAIN_TOP of them, so a request pays for a handful of names, not for its whole vocabulary.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from routing.learned.features import SIGNAL_NAMES

EXPLAIN_TOP = 3


class Contribution(NamedTuple):  # a tuple: a decision makes nine, a dataclass costs 3x more
    feature: str
    weight: float  # the feature's share of the score, in logits

    def as_dict(self) -> dict:
        return {"feature": self.feature, "weight": round(self.weight, 3)}


def top_contributions(
    ranked: np.ndarray, parts: np.ndarray, name_of: Callable[[int], str]
) -> tuple[Contribution, ...]:
    """Up to EXPLAIN_TOP contributions with the largest positive `ranked` values."""
    if len(ranked) > 48:
        head = np.argpartition(-ranked, EXPLAIN_TOP - 1)[:EXPLAIN_TOP]
        best = head[np.argsort(-ranked[head])].tolist()
        top = ranked.take(best).tolist()
    else:  # a chat message: a sort of plain floats beats numpy's per-call overhead
        values = ranked.tolist()
        # What heapq.nlargest returns (its documented equivalent), without its Python code.
        best = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:EXPLAIN_TOP]
        top = [values[i] for i in best]
    weights = top if parts is ranked else parts.take(best).tolist()
    return tuple(
        Contribution(name_of(i), weight)
        for i, weight, rank in zip(best, weights, top, strict=True)
        if rank > 0
    )


def premium_contributions(
    ngrams: tuple[Contribution, ...], signal_parts: Sequence[float], needs_premium: float
) -> tuple[Contribution, ...]:
    """The n-grams and signals that moved needs premium most, in its direction; `ngrams` are
    the n-grams' top contributions in that direction (Router's scores)."""
    sign = 1.0 if needs_premium >= 0.5 else -1.0
    signals = [
        Contribution(name, part)
        for name, part in zip(SIGNAL_NAMES, signal_parts, strict=True)
        if sign * part > 0
    ]
    # A stable sort: on a tie an n-gram comes first, then the signals in their order, as in
    # one ranking of all parts.
    ranked = sorted([*ngrams, *signals], key=lambda c: sign * c.weight, reverse=True)
    return tuple(ranked[:EXPLAIN_TOP])
