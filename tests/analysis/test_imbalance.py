import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from semscale_hf import pearson_correlation, scale_imbalance, spearman_correlation


def test_summary_statistics_against_numpy():
    scales = np.array([2.0, 4.0, 8.0, np.nan, 6.0])
    result = scale_imbalance(torch.tensor(scales))
    values = scales[np.isfinite(scales)]
    assert result.max_min_ratio == pytest.approx(4.0)
    assert result.coefficient_of_variation == pytest.approx(values.std() / values.mean())
    shares = values / values.sum()
    assert result.kl_from_uniform == pytest.approx(float(np.sum(shares * np.log(shares * len(values)))))
    np.testing.assert_allclose(result.normalized_scales, scales / 8.0)
    np.testing.assert_allclose(result.scale_deficits, 1 - scales / 8.0)
    assert result.num_measured == 4
    assert "pearson_scale_accuracy" not in result.to_dict()


def test_uniform_scales_have_zero_imbalance():
    result = scale_imbalance(torch.full((5,), 3.0))
    assert result.max_min_ratio == 1.0 and result.coefficient_of_variation == 0.0 and result.kl_from_uniform == 0.0


@settings(max_examples=50, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 6), st.floats(-10, 10)), min_size=3, max_size=25))
def test_correlations_match_scipy(data):
    x = np.array([float(a) for a, _ in data])  # integers give ties
    y = np.array([b for _, b in data])
    if np.ptp(x) == 0 or np.ptp(y) < 1e-6:
        assert math.isnan(pearson_correlation(torch.tensor(x), torch.tensor(y))) or np.ptp(y) > 0
        return
    assert pearson_correlation(torch.tensor(x), torch.tensor(y)) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-9)
    assert spearman_correlation(torch.tensor(x), torch.tensor(y)) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-9)


def test_correlation_of_constant_or_extreme_values():
    # hypothesis found it: the mean of three equal tiny values is not exactly that value, so centring left noise
    tiny = torch.full((3,), 8.950931959625072e-119, dtype=torch.float64)
    assert math.isnan(pearson_correlation(torch.tensor([0.0, 0.0, 1.0]), tiny))
    assert math.isnan(spearman_correlation(torch.tensor([0.0, 0.0, 1.0]), tiny))
    x = np.array([0.0, 1.0, 3.0, 2.0])
    for y in (np.array([1e-300, 2e-300, 2.5e-300, 4e-300]), np.array([1e300, 2e300, 2.5e300, 4e300])):
        got = pearson_correlation(torch.tensor(x), torch.tensor(y))
        assert got == pytest.approx(stats.pearsonr(x, y / np.abs(y).max())[0], abs=1e-12)


def test_accuracy_and_count_correlations():
    scales = torch.tensor([1.0, 2.0, 3.0, 4.0])
    accuracies = torch.tensor([0.9, 0.7, 0.6, 0.2])
    result = scale_imbalance(scales, accuracies=accuracies, counts=torch.tensor([50, 50, 50, 50]))
    assert result.spearman_scale_accuracy == pytest.approx(-1.0)
    assert result.pearson_scale_accuracy < -0.9
    # on sample-balanced data the count correlations are undefined: NaN, not an error
    assert math.isnan(result.pearson_count_accuracy) and math.isnan(result.spearman_effective_number_accuracy)
    with pytest.raises(ValueError, match="one per class"):
        scale_imbalance(scales, accuracies=torch.ones(3))


def test_zero_minimum_gives_infinite_ratio_and_nothing_measured_gives_nan():
    assert math.isinf(scale_imbalance(torch.tensor([0.0, 1.0])).max_min_ratio)
    assert math.isnan(scale_imbalance(torch.tensor([float("nan")])).max_min_ratio)


def test_one_measured_class_has_no_imbalance_statistics():
    result = scale_imbalance(torch.tensor([2.0, float("nan")]))
    assert result.num_measured == 1 and result.normalized_scales[0] == 1.0
    assert math.isnan(result.max_min_ratio) and math.isnan(result.coefficient_of_variation)
    assert math.isnan(result.kl_from_uniform)


def test_python_lists_are_read_in_float64():
    assert pearson_correlation([1.0, 1 + 1e-8, 1 + 2e-8], [1, 2, 3]) == pytest.approx(1.0)
    assert spearman_correlation([1.0, 1 + 1e-8, 1 + 2e-8], [3, 2, 1]) == pytest.approx(-1.0)
    assert scale_imbalance([1e39, 1.0]).max_min_ratio == pytest.approx(1e39)
    result = scale_imbalance([1.0, 2.0, 3.0], accuracies=[1.0, 1 + 1e-8, 1 + 2e-8], counts=[1e39, 1e38, 1.0])
    assert result.pearson_scale_accuracy == pytest.approx(1.0)
    assert result.spearman_count_accuracy == pytest.approx(-1.0)
