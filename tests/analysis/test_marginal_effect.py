import math

import numpy as np
import pytest
import torch
from _helpers.reference import reference_scale

from semscale_hf import fit_saturating_curve, marginal_effect


def test_fit_recovers_known_curve():
    sizes = torch.tensor([2, 5, 10, 20, 50, 100, 200, 400], dtype=torch.float64)
    values = 7.0 * (1 - torch.exp(-sizes / 30.0))
    fit = fit_saturating_curve(sizes, values)
    assert fit.asymptote == pytest.approx(7.0, rel=1e-4) and fit.tau == pytest.approx(30.0, rel=1e-3)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-9) and fit.m95 == pytest.approx(30.0 * math.log(20), rel=1e-3)
    torch.testing.assert_close(fit.predict(sizes), values, rtol=1e-4, atol=1e-4)


def test_marginal_effect_rises_and_saturates_on_gaussian_class():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(600, 8, generator=generator, dtype=torch.float64)
    effect = marginal_effect(features, repeats=5, seed=0)
    assert effect.sizes[0] == 2 and effect.sizes[-1] == 600
    assert effect.mean[-1] > effect.mean[0] and float(effect.std[-1]) == 0.0
    np.testing.assert_allclose(float(effect.mean[-1]), reference_scale(features.numpy()), rtol=1e-10)
    assert effect.fit.r_squared > 0.9 and effect.saturated


def test_marginal_effect_is_seeded_and_validates():
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    a = marginal_effect(features, sizes=[5, 10, 50], seed=3)
    b = marginal_effect(features, sizes=[5, 10, 50], seed=3)
    assert torch.equal(a.mean, b.mean)
    with pytest.raises(ValueError, match=r"sizes must lie in \[2, 50\]"):
        marginal_effect(features, sizes=[1, 10])
    with pytest.raises(ValueError, match="at least 3"):
        marginal_effect(features[:1])


def test_marginal_effect_needs_two_sizes_and_the_fit_takes_size_zero():
    features = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="at least 3 features"):
        marginal_effect(features[:2])
    assert marginal_effect(features).sizes == [2, 3]
    with pytest.raises(ValueError, match="at least two distinct sizes"):
        marginal_effect(features, sizes=[3, 3])
    fit = fit_saturating_curve([0, 10, 20, 40], [0, 1.0, 1.5, 1.8])
    assert fit.r_squared > 0.95 and 1.8 < fit.asymptote < 2.5
    with pytest.raises(ValueError, match="sizes must be non-negative"):
        fit_saturating_curve([-1, 10, 20], [0, 1.0, 1.5])
    with pytest.raises(ValueError, match="a positive size"):
        fit_saturating_curve([0, 0], [0, 1.0])
