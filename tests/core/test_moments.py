import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semscale_hf import (
    class_semantic_scales,
    init_moments,
    merge_moments,
    moments_from_features,
    scales_from_moments,
    update_moments,
)


def _data(seed, num_samples=90, dim=5, num_classes=4):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_samples, dim, generator=generator, dtype=torch.float64) + 2.0
    labels = torch.randint(0, num_classes, (num_samples,), generator=generator)
    return features, labels


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("normalize", [False, True])
def test_streaming_equals_one_shot(center, normalize):
    features, labels = _data(0)
    moments = init_moments(5, 5)
    for chunk in range(0, 90, 17):
        moments = update_moments(
            moments, features[chunk : chunk + 17], labels[chunk : chunk + 17], normalize=normalize
        )
    streamed = scales_from_moments(moments, center=center)
    direct = class_semantic_scales(features, labels, 5, center=center, normalize=normalize)
    np.testing.assert_allclose(streamed.numpy(), direct.numpy(), rtol=1e-10, equal_nan=True)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), split=st.integers(0, 90), alpha=st.sampled_from(["dim", 0.5, 3.0]))
def test_merge_of_two_halves_equals_whole(seed, split, alpha):
    features, labels = _data(seed)
    first = moments_from_features(features[:split], labels[:split], 4)
    second = moments_from_features(features[split:], labels[split:], 4)
    merged = merge_moments(first, second)
    whole = moments_from_features(features, labels, 4)
    for a, b in zip(merged, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(
        scales_from_moments(merged, alpha=alpha).numpy(),
        class_semantic_scales(features, labels, 4, alpha=alpha).numpy(),
        rtol=1e-9,
        equal_nan=True,
    )


def test_ignored_rows_and_low_precision():
    features, labels = _data(1)
    labels[:5] = -100
    moments = moments_from_features(features.to(torch.bfloat16), labels, 4)
    assert moments.counts.dtype == torch.float64 and int(moments.counts.sum()) == 85
    assert torch.isfinite(scales_from_moments(moments)).all()


def test_update_does_not_modify_input_and_errors():
    features, labels = _data(2)
    empty = init_moments(4, 5)
    update_moments(empty, features, labels)
    assert float(empty.counts.sum()) == 0 and float(empty.second.abs().sum()) == 0
    with pytest.raises(ValueError, match="dimension 5 but the statistics were built for 3"):
        update_moments(init_moments(4, 3), features, labels)
    with pytest.raises(ValueError, match="cannot merge"):
        merge_moments(init_moments(4, 3), init_moments(4, 5))
    with pytest.raises(ValueError, match="NaN or inf in 1 of"):
        update_moments(empty, torch.where(torch.arange(90)[:, None] == 4, float("nan"), features), labels)
