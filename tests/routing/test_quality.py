"""Shadow evaluation's pure parts: sampling, judge verdicts, Wilson intervals, calibration."""

from decimal import Decimal

import pytest

from routing.quality import (
    CalibrationRow,
    Judged,
    Retained,
    Verdict,
    calibration_choice,
    calibration_rows,
    combine_verdicts,
    complexity_band,
    judge_messages,
    judge_pair,
    judge_parse,
    order_verdict,
    projected_retained,
    shadow_sampled,
    threshold_supported,
    wilson_interval,
)

IDS = [f"req_{n:032x}" for n in range(20_000)]


@pytest.mark.parametrize("percent", [Decimal("2"), Decimal("10"), Decimal("50")])
def test_sampling_takes_about_the_configured_share_of_requests(percent):
    sampled = sum(shadow_sampled(request_id=i, percent=percent) for i in IDS)
    share = Decimal(sampled) * 100 / len(IDS)
    assert abs(share - percent) < Decimal("0.6")


def test_sampling_is_stable_per_request_and_nested_as_the_share_grows():
    small = {i for i in IDS if shadow_sampled(request_id=i, percent=Decimal("5"))}
    again = {i for i in IDS if shadow_sampled(request_id=i, percent=Decimal("5"))}
    larger = {i for i in IDS if shadow_sampled(request_id=i, percent=Decimal("20"))}
    assert small == again
    assert small < larger


def test_sampling_at_zero_takes_nothing_and_at_hundred_everything():
    assert not any(shadow_sampled(request_id=i, percent=Decimal("0")) for i in IDS[:2000])
    assert all(shadow_sampled(request_id=i, percent=Decimal("100")) for i in IDS[:2000])


def test_judge_sees_the_cheap_answer_first_in_one_order_and_second_in_the_other():
    # given
    cheap, premium = "cheap says hi", "premium says hello"
    # when
    a_ab, b_ab = judge_pair(order="ab", cheap=cheap, premium=premium)
    a_ba, b_ba = judge_pair(order="ba", cheap=cheap, premium=premium)
    messages = judge_messages(request_text="greet", answer_a=a_ab, answer_b=b_ab)
    # then
    assert (a_ab, b_ab) == (cheap, premium)
    assert (a_ba, b_ba) == (premium, cheap)
    assert "[ANSWER A]\ncheap says hi" in messages[1]["content"]
    assert "huntaze-judge-v1" in messages[0]["content"]


@pytest.mark.parametrize(
    ("order", "choice", "verdict"),
    [
        ("ab", "A", Verdict.CHEAP_BETTER),
        ("ab", "B", Verdict.PREMIUM_BETTER),
        ("ba", "A", Verdict.PREMIUM_BETTER),
        ("ba", "B", Verdict.CHEAP_BETTER),
        ("ab", "tie", Verdict.TIE),
        ("ba", "tie", Verdict.TIE),
    ],
)
def test_each_order_verdict_is_seen_from_the_cheap_answer(order, choice, verdict):
    assert order_verdict(order=order, choice=choice) == verdict


C, T, P = Verdict.CHEAP_BETTER, Verdict.TIE, Verdict.PREMIUM_BETTER


@pytest.mark.parametrize(
    ("ab", "ba", "combined"),
    [
        (C, C, C),
        (P, P, P),
        (T, T, T),
        (C, T, C),
        (T, P, P),
        (C, P, T),  # the judge picked answer A both times: position bias, a tie
        (P, C, T),  # answer B both times
    ],
)
def test_both_orders_combine_and_inconsistent_orders_are_a_tie(ab, ba, combined):
    assert combine_verdicts(ab, ba) == combined


def test_a_judge_always_picking_the_first_answer_yields_a_tie():
    ab = order_verdict(order="ab", choice="A")
    ba = order_verdict(order="ba", choice="A")
    assert combine_verdicts(ab, ba) == Verdict.TIE


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ('{"verdict": "A", "reason": "more complete"}', "A"),
        ('```json\n{"verdict": "tie", "reason": "same"}\n```', "tie"),
        ('{"verdict": "b", "reason": "x"}', "B"),
        ("Verdict: B. The second is right.", "B"),
        ("I cannot decide.", None),
        ('{"verdict": "C"}', None),
    ],
)
def test_judge_replies_are_parsed_or_refused(text, choice):
    reply = judge_parse(text)
    assert (reply.choice if reply else None) == choice


@pytest.mark.parametrize(
    ("good", "n", "low", "high"),
    [(9, 10, 0.59585, 0.98212), (0, 10, 0.0, 0.27753), (50, 100, 0.40383, 0.59617)],
)
def test_wilson_interval_matches_known_values(good, n, low, high):
    got_low, got_high = wilson_interval(good=good, n=n)
    assert got_low == pytest.approx(low, abs=1e-5)
    assert got_high == pytest.approx(high, abs=1e-5)


def test_retained_reports_percent_interval_and_alert_from_known_verdicts():
    # given 9 of 10 at least as good, floor 95%, 10 needed
    retained = Retained(good=9, n=10, floor_percent=Decimal("95"), min_samples=10)
    # then
    assert retained.percent == Decimal("90.0")
    assert retained.interval == (Decimal("59.6"), Decimal("98.2"))
    assert retained.below_floor
    assert not Retained(good=9, n=10, floor_percent=Decimal("95"), min_samples=30).below_floor
    assert not Retained(good=19, n=20, floor_percent=Decimal("95"), min_samples=10).below_floor


@pytest.mark.parametrize(
    ("complexity", "band"),
    [(0, "0-3"), (3.9, "0-3"), (4, "4-6"), (6.5, "4-6"), (7, "7-10"), (10, "7-10")],
)
def test_complexity_bands(complexity, band):
    assert complexity_band(complexity) == band


# A constructed data set: quality falls with complexity. 40 evaluations per level 0-5.
# level:      0   1   2   3   4   5
# bad:        0   0   0   1   8  16
JUDGED = [
    Judged(complexity=level + 0.5, good=i >= bad)
    for level, bad in enumerate([0, 0, 0, 1, 8, 16])
    for i in range(40)
]
# Cheaper as more goes cheap; "never" cheapest of all.
COSTS = {t: Decimal(100 - 5 * t) for t in range(11)} | {None: Decimal("40")}


def _rows(*, current=6, traffic_max=5.9, floor="95", min_samples=30):
    return calibration_rows(
        judged=JUDGED,
        monthly_cost_by_threshold=COSTS,
        floor_percent=Decimal(floor),
        min_samples=min_samples,
        current=current,
        traffic_max_complexity=traffic_max,
    )


def test_projected_retained_counts_evaluations_at_or_above_the_threshold_as_retained():
    r = projected_retained(judged=JUDGED, threshold=5, floor_percent=Decimal("95"), min_samples=1)
    assert (r.good, r.n) == (240 - 9, 240)


def test_calibration_picks_the_cheapest_threshold_meeting_the_floor():
    # retained: t=4 -> 239/240, t=5 -> 231/240 = 96.25%, t=6 -> 215/240 = 89.6%
    choice = calibration_choice(_rows(), current=6)
    assert choice.threshold == 5
    assert choice.retained.percent == Decimal("96.3")


def test_calibration_with_a_lower_floor_opens_more_to_the_cheap_tier():
    choice = calibration_choice(_rows(floor="85"), current=6)
    assert choice.threshold is None  # never: all traffic is within the evaluated levels


def test_calibration_refuses_thresholds_the_evaluations_do_not_cover():
    # traffic reaches complexity 9 but evaluations stop at level 5
    rows = {row.threshold: row for row in _rows(current=6, traffic_max=9.0, floor="85")}
    assert rows[6].supported and rows[5].supported
    assert not rows[7].supported and not rows[None].supported
    assert calibration_choice(rows.values(), current=6).threshold == 6


def test_calibration_needs_the_minimum_number_of_evaluations():
    assert calibration_choice(_rows(min_samples=1000), current=6) is None


def test_calibration_ties_prefer_the_current_threshold():
    flat = {t: Decimal("10") for t in COSTS}
    rows = calibration_rows(
        judged=JUDGED,
        monthly_cost_by_threshold=flat,
        floor_percent=Decimal("95"),
        min_samples=1,
        current=3,
        traffic_max_complexity=5.9,
    )
    assert calibration_choice(rows, current=3).threshold == 3


def test_threshold_zero_and_the_current_one_are_always_supported():
    assert threshold_supported(judged=[], threshold=0, current=7, traffic_max_complexity=9)
    assert threshold_supported(judged=[], threshold=7, current=7, traffic_max_complexity=9)
    assert not threshold_supported(judged=[], threshold=8, current=7, traffic_max_complexity=9)


def test_calibration_row_label():
    row = CalibrationRow(
        threshold=None, retained=Retained(0, 0), projected_monthly_usd=Decimal(0), supported=True
    )
    assert row.label == "never"
    assert not row.meets_floor
