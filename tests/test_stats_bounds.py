"""Confidence intervals stay inside what the metric can take: accuracies [0, 1], losses [0, inf)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from hwclf.report.stats import ACCURACY_RANGE, CI_METHOD, LOSS_RANGE, UNBOUNDED, describe, metric_range


def t_half(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return st.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


def test_the_demo_case_no_longer_goes_past_100_percent():
    # the demo's "99.3 % (95% CI [97.5, 101.1])": three seeds near the top
    values = [1.0, 0.9972, 0.9819]
    d = describe(values, bounds=ACCURACY_RANGE)
    assert d.mean + d.half > 1  # the plain t-interval would leave [0, 1]
    assert d.ci_high == 1.0 and d.ci_low == pytest.approx(d.mean - d.half)
    assert 0 <= d.ci_low <= d.mean <= d.ci_high <= 1


@pytest.mark.parametrize("values", [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.02], [1.0, 1.0, 0.98],
                                    [0.0, 1.0], [0.001, 0.0], [0.999, 1.0], [0.5, 0.0, 1.0]])
def test_accuracy_intervals_stay_in_0_1_at_and_near_the_ends(values):
    d = describe(values, bounds=ACCURACY_RANGE)
    assert 0.0 <= d.ci_low <= d.mean <= d.ci_high <= 1.0
    assert d.half == pytest.approx(t_half(values))  # the half-width is still the t-interval's
    plain = describe(values)  # the interval is the t-interval, only cut where it leaves [0, 1]
    assert d.ci_low == max(plain.ci_low, 0.0) and d.ci_high == min(plain.ci_high, 1.0)


def test_inside_the_range_nothing_changes():
    d = describe([0.80, 0.82, 0.84], bounds=ACCURACY_RANGE)
    assert (d.ci_low, d.ci_high) == pytest.approx((0.82 - d.half, 0.82 + d.half))


def test_identical_values_give_a_zero_width_interval():
    for v in (0.0, 0.4, 1.0):
        d = describe([v, v, v], bounds=ACCURACY_RANGE)
        assert d.std == pytest.approx(0, abs=1e-12)  # up to the mean's rounding
        assert d.ci_low == pytest.approx(v) and d.ci_high == pytest.approx(v) and 0 <= d.ci_low <= d.ci_high <= 1


def test_one_value_has_no_interval_even_with_bounds():
    d = describe([1.0], bounds=ACCURACY_RANGE)
    assert d.n == 1 and d.mean == 1.0 and math.isnan(d.half) and math.isnan(d.ci_low) and math.isnan(d.ci_high)


def test_two_values_use_one_degree_of_freedom():
    d = describe([0.99, 1.0], bounds=ACCURACY_RANGE)
    assert d.half == pytest.approx(st.t.ppf(0.975, 1) * math.sqrt(0.00005) / math.sqrt(2))  # 12.7 * sd / sqrt 2
    assert d.ci_low == pytest.approx(0.995 - d.half) and d.ci_high == 1.0
    wide = describe([0.5, 1.0], bounds=ACCURACY_RANGE)
    assert wide.ci_low == 0.0 and wide.ci_high == 1.0  # so wide it is the whole range: say so, do not exceed it


def test_losses_have_no_upper_bound_but_are_not_negative():
    d = describe([0.01, 0.02, 5.0], bounds=LOSS_RANGE)
    assert d.ci_low == 0.0 and d.ci_high == pytest.approx(d.mean + d.half) and d.ci_high > 1


def test_unbounded_by_default_for_differences():
    d = describe([-0.5, -0.4, 0.3])
    assert d.ci_low == pytest.approx(d.mean - d.half) and d.ci_low < -1


def test_metric_names_map_to_their_range_and_the_method_is_stated():
    assert metric_range("accuracy") == metric_range("clean_balanced_accuracy") == ACCURACY_RANGE
    assert metric_range("matched_loss") == LOSS_RANGE and metric_range("difference") == UNBOUNDED
    assert "cut to the range" in CI_METHOD and CI_METHOD.endswith(".")


def test_summary_and_matrix_tables_use_the_ranges():
    """Through the report's own tables: accuracies at the top stay <= 1, losses keep their upper side."""
    import pandas as pd

    from hwclf.report import tables as T

    class Exp:
        archs, train_blurs, test_blurs, grid = ["basic"], [0], [0], [("basic", 0, s) for s in range(3)]

        def expected(self, arch, b):
            return 3

    tidy = pd.DataFrame({"arch": "basic", "train_blur": 0, "test_blur": 0, "seed": [0, 1, 2], "status": T.COMPLETE,
                         "accuracy": [1.0, 0.9972, 0.9819], "balanced_accuracy": [1.0, 0.99, 0.97],
                         "loss": [0.001, 0.02, 0.09]})
    summary = T.summary_table(Exp(), tidy).iloc[0]
    assert summary["clean_accuracy_ci_high"] == 1.0 and summary["clean_balanced_accuracy_ci_high"] == 1.0
    assert summary["clean_loss_ci_low"] == 0.0 and summary["clean_loss_ci_high"] > summary["clean_loss_mean"]
    for metric in ("accuracy", "loss"):
        row = T.matrix_table(Exp(), tidy, metric).iloc[0]
        assert row["ci_low"] >= 0 and (row["ci_high"] == 1.0) == (metric == "accuracy")
