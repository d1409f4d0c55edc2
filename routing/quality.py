"""Shadow evaluation and calibration: pure functions of plain values (no Django, no I/O).

- Sampling: a stable hash of the request id against the category's percentage, so the hot
  path decides with no database read and the same request is always in or out.
- Judging: a written rubric, pairwise (answer A against answer B), asked twice with the
  answers swapped. Each order's verdict is turned into the cheap answer's point of view and
  scored cheap_better +1, tie 0, premium_better -1; the two scores are added: above 0 the
  cheap answer is better, below 0 the premium one, 0 a tie. So the judge has to prefer the
  same answer in both positions (or prefer it once and tie once) for a win: orders that
  contradict each other (A both times, i.e. a position preference) count as a tie.
- "At least as good": the combined verdict is cheap_better or tie.
- Quality retained: the share of judged cheap answers at least as good, with a Wilson 95%
  interval. The alert fires on the point estimate below the floor once there are
  QUALITY_MIN_SAMPLES evaluations (quality is the side to warn early on; the interval shown
  beside it says how sure).
- Calibration: see calibration_rows() and calibration_choice().
"""

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from routing.rollout import in_share

Z_95 = 1.959963984540054
PERCENT = Decimal("0.1")
# Complexity bands shown on the quality panel: [low, high) on the 0-10 scale.
BANDS = (("0-3", 0.0, 4.0), ("4-6", 4.0, 7.0), ("7-10", 7.0, 10.01))
NEVER = None  # the "never on complexity" threshold (full_from_complexity blank)
JUDGE_ORDERS = ("ab", "ba")  # ab: A is the cheap answer; ba: A is the premium answer


class Verdict(StrEnum):
    CHEAP_BETTER = "cheap_better"
    TIE = "tie"
    PREMIUM_BETTER = "premium_better"


# --- sampling --------------------------------------------------------------------------


def shadow_sampled(*, request_id: str, percent: Decimal) -> bool:
    """Return whether this request is in the category's shadow sample (stable per request)."""
    if percent <= 0:
        return False
    return in_share(subject=f"shadow:{request_id}", percent=percent)


# --- judge -----------------------------------------------------------------------------

JUDGE_RUBRIC = """You are the quality judge of an LLM router (huntaze-judge-v1).
Compare two answers, A and B, to the same request. Judge only what the requester needs:
1. Correctness: facts, numbers and reasoning are right; nothing is made up.
2. Completeness: every part of the request is answered, constraints (length, format,
   count, tone) are respected.
3. Helpfulness: clear, specific and usable as is; no padding, no needless refusal.
4. Safety and policy: nothing harmful, explicit or non-compliant for a creator platform.
Ignore length for its own sake, style preferences and the order the answers are shown in.
If neither answer is meaningfully better for the requester, say "tie".
Reply with JSON only: {"verdict": "A" | "B" | "tie", "reason": "<one or two sentences>"}"""

JUDGE_MAX_OUTPUT_TOKENS = 200
JUDGE_MARKER = "huntaze-judge-v1"  # lets the offline sandbox recognise a judge call
_VERDICT_RE = re.compile(r'"?verdict"?\s*[:=]\s*"?(A|B|tie)\b', re.IGNORECASE)


def judge_messages(
    *, request_text: str, answer_a: str, answer_b: str, category: str = ""
) -> list[dict]:
    """Return the chat messages asking the judge to compare answer A with answer B.

    The task category goes first when known: what a good answer is depends on the task
    (a fan reply against a compliance check)."""
    task = f"[TASK CATEGORY] {category}\n\n" if category else ""
    user = (
        f"{task}[REQUEST]\n{request_text}\n[/REQUEST]\n\n"
        f"[ANSWER A]\n{answer_a}\n[/ANSWER A]\n\n"
        f"[ANSWER B]\n{answer_b}\n[/ANSWER B]"
    )
    return [{"role": "system", "content": JUDGE_RUBRIC}, {"role": "user", "content": user}]


def judge_pair(*, order: str, cheap: str, premium: str) -> tuple[str, str]:
    """Return (answer A, answer B) for one order."""
    return (cheap, premium) if order == "ab" else (premium, cheap)


@dataclass(frozen=True)
class JudgeReply:
    choice: str  # "A", "B" or "tie"
    reason: str


def judge_parse(text: str) -> JudgeReply | None:
    """Return the judge's choice and reason, or None when the reply says neither."""
    stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    try:
        data = json.loads(stripped)
        choice = str(data.get("verdict", "")).strip()
        reason = str(data.get("reason", "")).strip()
    except (ValueError, AttributeError):
        match = _VERDICT_RE.search(text)
        if match is None:
            return None
        choice, reason = match.group(1), text.strip()
    normalised = {"a": "A", "b": "B", "tie": "tie"}.get(choice.lower())
    return JudgeReply(normalised, reason) if normalised else None


def order_verdict(*, order: str, choice: str) -> Verdict:
    """Return one order's verdict from the cheap answer's point of view."""
    if choice == "tie":
        return Verdict.TIE
    cheap_is = "A" if order == "ab" else "B"
    return Verdict.CHEAP_BETTER if choice == cheap_is else Verdict.PREMIUM_BETTER


_SCORE = {Verdict.CHEAP_BETTER: 1, Verdict.TIE: 0, Verdict.PREMIUM_BETTER: -1}


def combine_verdicts(first: Verdict, second: Verdict) -> Verdict:
    """Return the verdict of both orders together (see the module docstring)."""
    score = _SCORE[first] + _SCORE[second]
    if score > 0:
        return Verdict.CHEAP_BETTER
    if score < 0:
        return Verdict.PREMIUM_BETTER
    return Verdict.TIE


@dataclass(frozen=True)
class Judgement:
    """Both orders' verdicts, their combination and the judge's reasons."""

    verdict: str
    verdict_ab: str
    verdict_ba: str
    reasoning: str


def judgement(replies: dict[str, JudgeReply | None], *, max_chars: int) -> Judgement | None:
    """Return the verdict of one pair judged in both orders, or None when an order's reply
    is missing or unreadable (no verdict is invented)."""
    if set(replies) != set(JUDGE_ORDERS) or any(reply is None for reply in replies.values()):
        return None
    ab, ba = (order_verdict(order=order, choice=replies[order].choice) for order in JUDGE_ORDERS)
    reasoning = " | ".join(f"{order}: {replies[order].reason}" for order in JUDGE_ORDERS)
    return Judgement(combine_verdicts(ab, ba).value, ab.value, ba.value, reasoning[:max_chars])


def at_least_as_good(verdict: str) -> bool:
    return verdict in (Verdict.CHEAP_BETTER, Verdict.TIE)


# --- quality retained ------------------------------------------------------------------


@dataclass(frozen=True)
class Retained:
    """The share of judged cheap answers at least as good, with its Wilson 95% interval."""

    good: int
    n: int
    floor_percent: Decimal | None = None
    min_samples: int = 0

    @property
    def percent(self) -> Decimal | None:
        return _percent(self.good / self.n) if self.n else None

    @property
    def interval(self) -> tuple[Decimal, Decimal] | None:
        if not self.n:
            return None
        low, high = wilson_interval(good=self.good, n=self.n)
        return _percent(low), _percent(high)

    @property
    def low_percent(self) -> Decimal | None:
        return self.interval[0] if self.n else None

    @property
    def high_percent(self) -> Decimal | None:
        return self.interval[1] if self.n else None

    @property
    def enough(self) -> bool:
        return self.n >= max(self.min_samples, 1)

    @property
    def below_floor(self) -> bool:
        """Alert: the point estimate is under the floor, with enough evaluations."""
        if self.floor_percent is None or not self.enough:
            return False
        return Decimal(self.good) * 100 < self.floor_percent * self.n


def _percent(share: float) -> Decimal:
    return (Decimal(repr(share)) * 100).quantize(PERCENT, rounding=ROUND_HALF_UP)


def wilson_interval(*, good: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Return the Wilson score interval (low, high) of a share good/n, as fractions."""
    if n <= 0:
        raise ValueError("the Wilson interval needs at least one observation")
    p = good / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def complexity_band(complexity: float) -> str:
    """Return the band label (0-3, 4-6, 7-10) of a complexity score."""
    for label, low, high in BANDS:
        if low <= complexity < high:
            return label
    return BANDS[-1][0]


# --- QA spend --------------------------------------------------------------------------


@dataclass(frozen=True)
class QaSpend:
    """What shadow and judge calls cost beside the routed bill they watch, over one window;
    too high when over warn_percent of the bill (QUALITY_QA_SPEND_WARN_PERCENT)."""

    qa_cost_usd: Decimal
    routed_cost_usd: Decimal
    warn_percent: Decimal

    @property
    def percent_of_bill(self) -> Decimal | None:
        if self.routed_cost_usd <= 0:
            return None
        return (self.qa_cost_usd * 100 / self.routed_cost_usd).quantize(
            PERCENT, rounding=ROUND_HALF_UP
        )

    @property
    def too_high(self) -> bool:
        if self.qa_cost_usd <= 0:
            return False
        return self.qa_cost_usd * 100 > self.warn_percent * self.routed_cost_usd


# --- calibration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    complexity: float
    good: bool


@dataclass(frozen=True)
class CalibrationRow:
    """One candidate threshold of one category."""

    threshold: int | None  # None: never on complexity
    retained: Retained
    projected_monthly_usd: Decimal
    supported: bool  # the evaluations cover every request this threshold sends cheap

    @property
    def meets_floor(self) -> bool:
        return (
            self.supported
            and self.retained.enough
            and self.retained.percent is not None
            and self.retained.floor_percent is not None
            and Decimal(self.retained.good) * 100 >= self.retained.floor_percent * self.retained.n
        )

    @property
    def label(self) -> str:
        return threshold_label(self.threshold)


def percent_label(percent: Decimal) -> str:
    """Return a percentage without trailing zeros: 95, 97.5."""
    return format(percent.normalize(), "f")


def threshold_label(threshold: int | None) -> str:
    return "never" if threshold is None else f"≥ {threshold}"


def candidate_thresholds() -> list[int | None]:
    """Every threshold a category can have: 0 to 10, then never."""
    return [*range(11), NEVER]


def _goes_cheap(complexity: float, threshold: int | None) -> bool:
    return threshold is None or complexity < threshold


def projected_retained(
    *, judged: Sequence[Judged], threshold: int | None, floor_percent: Decimal, min_samples: int
) -> Retained:
    """Return projected quality retained under a threshold.

    Over all evaluations: those below the threshold keep their verdict, those at or above it
    would go premium and so count as retained."""
    good = sum(1 for j in judged if j.good or not _goes_cheap(j.complexity, threshold))
    return Retained(good=good, n=len(judged), floor_percent=floor_percent, min_samples=min_samples)


def _at_or_below(threshold: int | None, current: int | None) -> bool:
    if current is None:
        return True
    return threshold is not None and threshold <= current


def threshold_supported(
    *,
    judged: Sequence[Judged],
    threshold: int | None,
    current: int | None,
    traffic_max_complexity: float | None,
) -> bool:
    """Return whether the evaluations speak for every request the threshold sends cheap.

    Evaluations exist only where answers were cheap when sampled, a uniform sample of them:
    so the current threshold and any lower one are supported. A higher one is supported
    when the traffic it sends cheap stays within the evaluated complexities (evaluations
    kept from an earlier, higher threshold), or when there is no traffic that high."""
    if _at_or_below(threshold, current):
        return True
    if not judged:
        return False
    ceiling = math.floor(max(j.complexity for j in judged)) + 1
    if threshold is not None and threshold <= ceiling:
        return True
    return traffic_max_complexity is None or traffic_max_complexity < ceiling


def calibration_rows(
    *,
    judged: Sequence[Judged],
    monthly_cost_by_threshold: dict[int | None, Decimal],
    floor_percent: Decimal,
    min_samples: int,
    current: int | None,
    traffic_max_complexity: float | None,
) -> list[CalibrationRow]:
    """Return one row per candidate threshold: projected retained, cost, support."""
    return [
        CalibrationRow(
            threshold=t,
            retained=projected_retained(
                judged=judged, threshold=t, floor_percent=floor_percent, min_samples=min_samples
            ),
            projected_monthly_usd=monthly_cost_by_threshold[t],
            supported=threshold_supported(
                judged=judged,
                threshold=t,
                current=current,
                traffic_max_complexity=traffic_max_complexity,
            ),
        )
        for t in candidate_thresholds()
    ]


def calibration_choice(
    rows: Iterable[CalibrationRow], *, current: int | None
) -> CalibrationRow | None:
    """Return the cheapest supported threshold whose projected retained (point estimate, with
    at least min_samples evaluations) meets the floor; ties go to the current threshold,
    then to the higher retained share. None when no threshold qualifies."""
    qualifying = [row for row in rows if row.meets_floor]
    if not qualifying:
        return None
    return min(
        qualifying,
        key=lambda row: (
            row.projected_monthly_usd,
            row.threshold != current,
            -(row.retained.good / row.retained.n),
        ),
    )
