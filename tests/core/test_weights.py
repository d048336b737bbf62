import math

import numpy as np
import pytest
import torch
from _helpers.reference import reference_weights
from hypothesis import given, settings
from hypothesis import strategies as st

from semscale_hf import (
    blend_weights,
    effective_number,
    effective_number_weights,
    inverse_frequency_weights,
    scales_to_weights,
)


scale_lists = st.lists(st.one_of(st.floats(0.01, 1e4), st.just(float("nan"))), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(scales=scale_lists, power=st.floats(-3, 3))
def test_weights_finite_positive_mean_one_and_match_reference(scales, power):
    tensor = torch.tensor(scales, dtype=torch.float64)
    weights = scales_to_weights(tensor, power=power)
    assert weights.dtype == torch.float64 and torch.isfinite(weights).all() and (weights > 0).all()
    measured = torch.isfinite(tensor)
    if measured.any():
        assert math.isclose(float(weights[measured].mean()), 1.0, rel_tol=1e-9)
        np.testing.assert_allclose(weights.numpy(), reference_weights(scales, power), rtol=1e-8)
        assert (weights[~measured] == weights[measured].max()).all()
    else:
        assert (weights == 1).all()


@settings(max_examples=60, deadline=None)
@given(scales=scale_lists, power=st.floats(0.1, 3), w_min=st.floats(0.0, 1.0), w_max=st.floats(1.0, 5.0))
def test_clamped_weights_respect_bounds_and_mean_one(scales, power, w_min, w_max):
    tensor = torch.tensor(scales, dtype=torch.float64)
    weights = scales_to_weights(tensor, power=power, w_min=w_min, w_max=w_max)
    assert (weights >= w_min - 1e-9).all() and (weights <= w_max + 1e-9).all() and (weights > 0).all()
    measured = torch.isfinite(tensor)
    if measured.any():
        assert math.isclose(float(weights[measured].mean()), 1.0, rel_tol=1e-6)


def test_direction_of_power():
    scales = torch.tensor([1.0, 4.0])
    assert scales_to_weights(scales, power=1.0)[0] > 1 > scales_to_weights(scales, power=1.0)[1]
    assert scales_to_weights(scales, power=-1.0)[1] > 1 > scales_to_weights(scales, power=-1.0)[0]
    assert (scales_to_weights(scales, power=0.0) == 1).all()


def test_zero_scale_gets_large_finite_weight():
    weights = scales_to_weights(torch.tensor([0.0, 1.0, 2.0]))
    assert torch.isfinite(weights).all() and weights[0] > weights[1] > weights[2] > 0


def test_count_baselines():
    counts = torch.tensor([100.0, 10.0, 1.0, 0.0], dtype=torch.float64)
    inverse = inverse_frequency_weights(counts)
    np.testing.assert_allclose(inverse[:3].numpy(), np.array([0.01, 0.1, 1.0]) / np.mean([0.01, 0.1, 1.0]))
    assert inverse[3] == inverse.max()
    beta = 0.99
    expected = (1 - beta ** counts[:3].numpy()) / (1 - beta)
    np.testing.assert_allclose(effective_number(counts[:3], beta).numpy(), expected)
    cb = effective_number_weights(counts, beta=beta)
    np.testing.assert_allclose(cb[:3].numpy(), (1 / expected) / np.mean(1 / expected))
    assert cb[3] == cb.max() and math.isclose(float(cb[:3].mean()), 1.0)


def test_blend_and_errors():
    new, old = torch.tensor([2.0, 0.5, 0.5]), torch.tensor([1.0, 1.0, 1.0])
    blended = blend_weights(new, old, 0.5)
    assert math.isclose(float(blended.mean()), 1.0) and float(blended[0]) == pytest.approx(1.5)
    assert torch.equal(blend_weights(new, None, 0.9), new.double())
    with pytest.raises(ValueError, match="momentum"):
        blend_weights(new, old, 1.0)
    with pytest.raises(ValueError, match="w_min <= 1 <= w_max"):
        scales_to_weights(torch.tensor([1.0, 2.0]), w_min=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        scales_to_weights(torch.tensor([-1.0, 2.0]))
    with pytest.raises(ValueError, match="1-D"):
        scales_to_weights(torch.ones(2, 2))
    with pytest.raises(ValueError, match="non-negative"):
        inverse_frequency_weights(torch.tensor([-1.0, 2.0]))


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(min_value=0.0, max_value=1e308, allow_subnormal=True), st.just(float("nan"))),
        min_size=1,
        max_size=8,
    ),
    power=st.one_of(st.floats(min_value=-1e6, max_value=1e6), st.sampled_from([1e6, -1e6, 0.0, 1e-12])),
)
def test_weights_are_finite_and_positive_for_extreme_scales_and_powers(values, power):
    weights = scales_to_weights(torch.tensor(values, dtype=torch.float64), power=power)
    assert bool(torch.isfinite(weights).all()) and bool((weights > 0).all())
    measured = ~torch.isnan(torch.tensor(values, dtype=torch.float64))
    if bool(measured.any()):
        assert float(weights[measured].mean()) == pytest.approx(1.0, rel=1e-9)


def test_an_infinite_scale_is_an_error_not_an_unmeasured_class():
    with pytest.raises(ValueError, match=r"got inf at classes \[2\]"):
        scales_to_weights(torch.tensor([1.0, 2.0, float("inf")]))


def test_weights_stay_positive_in_the_dtype_of_the_loss():
    from semscale_hf.core.balancer import SemScaleBalancer

    # a large power: the wider class's weight is the smallest float64, which is 0 in float32
    balancer = SemScaleBalancer([8, 8], power=2000)
    generator = torch.Generator().manual_seed(0)
    features = torch.cat([torch.randn(8, 3, generator=generator), 3 * torch.randn(8, 3, generator=generator)])
    balancer.record(features, torch.tensor([0] * 8 + [1] * 8))
    balancer.refresh(step=1)
    assert bool((balancer.class_weights > 0).all()) and balancer.class_weights.float()[1] == 0
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        weights = balancer.loss_weights("cpu", dtype)
        assert weights.dtype == dtype and bool((weights > 0).all()) and weights[0] == 2.0


def test_blending_weights_with_themselves_changes_nothing_when_a_class_is_unmeasured():
    # the renormalisation ran over every class, the unmeasured ones (largest weight) too: every blend shrank the
    # weights, below w_min at times
    scales = torch.tensor([1.0, 2.0, 4.0, math.nan])
    measured = torch.isfinite(scales)
    for bounds in ({}, {"w_min": 0.5, "w_max": 1.5}):
        weights = scales_to_weights(scales, **bounds)
        blended = blend_weights(weights, weights, 0.5, measured=measured, **bounds)
        torch.testing.assert_close(blended, weights, rtol=1e-12, atol=0)
    # blending two different vectors: mean 1 over the measured classes, inside the bounds, unmeasured at the top
    old = scales_to_weights(torch.tensor([4.0, 2.0, 1.0, math.nan]), w_min=0.5, w_max=1.5)
    new = scales_to_weights(scales, w_min=0.5, w_max=1.5)
    blended = blend_weights(new, old, 0.5, measured=measured, w_min=0.5, w_max=1.5)
    assert float(blended[:3].mean()) == pytest.approx(1.0) and float(blended[3]) == float(blended[:3].max())
    assert 0.5 <= float(blended.min()) and float(blended.max()) <= 1.5


def test_weights_that_underflow_stay_finite_under_an_upper_bound():
    # a raw weight that underflowed to 0 made log 0 = -inf an end of the bisection: NaN weights reached the loss
    for weights in (
        scales_to_weights(torch.tensor([1.0, 2.0, 3.0]), power=2000, w_max=1.5),
        scales_to_weights(torch.tensor([1.0, 2.0, 3.0]), power=1e6, w_max=2.0),
        inverse_frequency_weights(torch.tensor([1.0, 10.0, 100.0]), power=1e6, w_max=2.0),
    ):
        assert bool(torch.isfinite(weights).all()) and bool((weights > 0).all()), weights
        assert float(weights.mean()) == pytest.approx(1.0) and float(weights.max()) <= 2.0
