import math

import numpy as np
import pytest
import torch
from _helpers.reference import reference_class_scales, reference_scale
from hypothesis import given, settings
from hypothesis import strategies as st

from semscale_hf import class_semantic_scales, semantic_scale


def _data(seed, num_samples=120, dim=6, num_classes=4, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_samples, dim, generator=generator, dtype=torch.float64) * 2 + 3
    labels = torch.randint(0, num_classes, (num_samples,), generator=generator)
    return features.to(dtype), labels


@pytest.mark.parametrize("alpha", ["dim", 1.0, 0.25])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("normalize", [False, True])
def test_class_scales_match_float64_loop_reference(alpha, center, normalize):
    features, labels = _data(0)
    got = class_semantic_scales(features, labels, 5, alpha=alpha, center=center, normalize=normalize)
    want = reference_class_scales(features.numpy(), labels.numpy(), 5, alpha, center, normalize)
    assert got.dtype == torch.float64 and got.shape == (5,)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, equal_nan=True)
    assert math.isnan(float(got[4]))  # class 4 has no samples


def test_gram_and_scatter_forms_agree_across_sizes():
    # classes with m < d use the Gram form, m >= d the scatter form; both must match the d x d reference
    generator = torch.Generator().manual_seed(1)
    dim = 20
    counts = [2, 3, 5, 19, 20, 21, 40, 100]
    features = torch.randn(sum(counts), dim, generator=generator, dtype=torch.float64)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    got = class_semantic_scales(features, labels, len(counts))
    want = reference_class_scales(features.numpy(), labels.numpy(), len(counts))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    num_samples=st.integers(1, 60),
    dim=st.integers(1, 12),
    num_classes=st.integers(1, 6),
)
def test_property_matches_reference_and_is_permutation_invariant(seed, num_samples, dim, num_classes):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_samples, dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (num_samples,), generator=generator)
    got = class_semantic_scales(features, labels, num_classes)
    want = reference_class_scales(features.numpy(), labels.numpy(), num_classes)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9, equal_nan=True)
    permutation = torch.randperm(num_samples, generator=generator)
    permuted = class_semantic_scales(features[permutation], labels[permutation], num_classes)
    np.testing.assert_allclose(permuted.numpy(), got.numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-50, 50))
def test_translation_invariance_when_centred(seed, shift):
    features, labels = _data(seed, num_samples=40, dim=5, num_classes=3)
    moved = features + shift * torch.linspace(-1, 1, 5, dtype=torch.float64)
    a = class_semantic_scales(features, labels, 3)
    b = class_semantic_scales(moved, labels, 3)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, equal_nan=True)


def test_not_translation_invariant_without_centring():
    features, labels = _data(3)
    a = class_semantic_scales(features, labels, 4, center=False)
    b = class_semantic_scales(features + 10.0, labels, 4, center=False)
    assert (b > a).all()


def test_expected_scale_grows_with_sample_count():
    generator = torch.Generator().manual_seed(0)
    population = torch.randn(2000, 16, generator=generator, dtype=torch.float64) @ torch.diag(
        torch.linspace(0.2, 2.0, 16, dtype=torch.float64)
    )
    expected = []
    for size in [2, 4, 8, 16, 32, 64, 128, 256]:
        draws = [population[torch.randperm(2000, generator=generator)[:size]] for _ in range(30)]
        expected.append(float(torch.stack([semantic_scale(d) for d in draws]).mean()))
    assert all(later > earlier for earlier, later in zip(expected, expected[1:], strict=False)), expected


def test_single_sample_has_zero_scale_and_min_count_gives_nan():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]])
    labels = torch.tensor([0, 1, 1])
    scales = class_semantic_scales(features, labels, 3)
    assert math.isnan(float(scales[0])) and math.isnan(float(scales[2])) and float(scales[1]) > 0
    scales = class_semantic_scales(features, labels, 3, min_count=1)
    assert float(scales[0]) == 0.0
    assert float(semantic_scale(features[:1])) == 0.0


def test_ignore_index_rows_are_skipped():
    features, labels = _data(5)
    noisy = torch.cat([features, torch.full((7, 6), 1e3, dtype=torch.float64)])
    noisy_labels = torch.cat([labels, torch.full((7,), -100)])
    np.testing.assert_allclose(
        class_semantic_scales(noisy, noisy_labels, 4).numpy(), class_semantic_scales(features, labels, 4).numpy()
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_give_finite_float64_close_to_reference(dtype):
    features, labels = _data(7, num_samples=300, dim=32, num_classes=5)
    low = features.to(dtype)
    got = class_semantic_scales(low, labels, 5)
    want = reference_class_scales(low.to(torch.float64).numpy(), labels.numpy(), 5)
    assert got.dtype == torch.float64 and torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4)


def test_float32_products_stay_within_1e4_of_float64_at_realistic_size():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1500, 128, generator=generator) * torch.rand(128, generator=generator) + 5.0
    labels = torch.randint(0, 8, (1500,), generator=generator)
    fast = class_semantic_scales(features, labels, 8)  # float32 products
    exact = class_semantic_scales(features, labels, 8, compute_dtype=torch.float64)
    assert ((fast - exact).abs() / exact).max() < 1e-4


def test_large_dimension_is_finite_where_det_then_log_overflows():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(500, 768, generator=generator, dtype=torch.float64)
    z = features - features.mean(0)
    naive = 0.5 * torch.log2(torch.linalg.det(torch.eye(768, dtype=torch.float64) + (768 / 500) * z.T @ z))
    assert torch.isinf(naive)  # the author's det-then-log snippet
    got = semantic_scale(features)
    assert torch.isfinite(got)
    np.testing.assert_allclose(float(got), reference_scale(features.numpy()), rtol=1e-10)


def test_huge_values_fall_back_to_float64():
    features = torch.randn(10, 4, generator=torch.Generator().manual_seed(0)) * 1e25  # squares overflow float32
    got = semantic_scale(features)
    assert torch.isfinite(got)
    np.testing.assert_allclose(float(got), reference_scale(features.double().numpy()), rtol=1e-6)


def test_bucketing_with_many_classes_matches_reference():
    generator = torch.Generator().manual_seed(2)
    counts = [int(200 * (0.05 ** (i / 59))) + 2 for i in range(60)]
    features = torch.randn(sum(counts), 24, generator=generator)
    labels = torch.repeat_interleave(torch.arange(60), torch.tensor(counts))
    shuffle = torch.randperm(len(labels), generator=generator)
    got = class_semantic_scales(features[shuffle], labels[shuffle], 60)
    want = reference_class_scales(features.double().numpy(), labels.numpy(), 60)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_bad_input_raises_clear_errors():
    features, labels = _data(0)
    broken = features.clone()
    broken[[3, 9], 0] = float("nan")
    broken[11, 2] = float("inf")
    with pytest.raises(ValueError, match="3 of 120 rows"):
        class_semantic_scales(broken, labels, 4)
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        class_semantic_scales(features, torch.where(labels == 0, 7, labels), 4)
    with pytest.raises(ValueError, match="outside"):
        class_semantic_scales(features, torch.where(labels == 0, -1, labels), 4)
    with pytest.raises(ValueError, match="120 rows but labels have 119"):
        class_semantic_scales(features, labels[:-1], 4)
    with pytest.raises(ValueError, match="2-D"):
        class_semantic_scales(features[None], labels, 4)
    with pytest.raises(ValueError, match="2-D"):
        semantic_scale(features[0])
    with pytest.raises(ValueError, match="alpha"):
        class_semantic_scales(features, labels, 4, alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        class_semantic_scales(features, labels, 4, alpha=-1.0)
    with pytest.raises(TypeError, match="integer"):
        class_semantic_scales(features, labels.double(), 4)
    with pytest.raises(ValueError, match="empty"):
        semantic_scale(features[:0])
    with pytest.raises(ValueError, match="num_classes"):
        class_semantic_scales(features, labels, 0)


def test_low_rank_offset_features_and_tiny_classes():
    # realistic penultimate features: low effective rank, large common offset, many tiny classes (Gram form with
    # the exact null direction of centring) and a few classes with m > d (scatter form)
    generator = torch.Generator().manual_seed(3)
    basis = torch.randn(12, 64, generator=generator)
    counts = [2, 3, 5, 8, 13, 40, 63, 64, 65, 200]
    features = torch.cat(
        [torch.randn(m, 12, generator=generator) @ basis * (1 + c) + 20.0 for c, m in enumerate(counts)]
    ) + 1e-3 * torch.randn(sum(counts), 64, generator=generator)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    want = reference_class_scales(features.double().numpy(), labels.numpy(), len(counts))
    exact = class_semantic_scales(features.double(), labels, len(counts))
    np.testing.assert_allclose(exact.numpy(), want, rtol=1e-10)
    # float32 products: the exact (m - 1)-row centring keeps the tiny classes at float64 accuracy; the classes whose
    # 1e-3 noise directions sit far below the float32 rounding of the large entries miss 1e-4 (documented limit)
    fast = class_semantic_scales(features, labels, len(counts))
    np.testing.assert_allclose(fast.numpy()[:5], want[:5], rtol=1e-6)
    np.testing.assert_allclose(fast.numpy(), want, rtol=3e-3)


def test_lower_blocked_product_equals_lower_triangle_of_full_product():
    from semscale_hf.core._linalg import SYMMETRIC_BLOCK, lower_symmetric_product

    generator = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2 * SYMMETRIC_BLOCK + 37, 3 * SYMMETRIC_BLOCK + 5, generator=generator, dtype=torch.float64)
    for gram, full in [(True, x @ x.transpose(1, 2)), (False, x.transpose(1, 2) @ x)]:
        got = lower_symmetric_product(x.float(), gram, torch.float64)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got.tril(), full.tril(), rtol=1e-5, atol=1e-3)
        # above the diagonal only the diagonal blocks are computed; the rest stays zero (consumers read the lower
        # triangle only)
        upper = got.triu(1)
        torch.testing.assert_close(torch.where(upper != 0, upper, full.triu(1)), full.triu(1), rtol=1e-5, atol=1e-3)
        assert (upper[0] == 0).float().mean() > 0.4


def test_finite_rows_whose_sum_overflows_are_accepted():
    # the NaN check sums each row first; a sum that overflows on finite values must not be reported as NaN/inf
    features = torch.tensor([[3e38, 3e38], [1.0, 2.0], [-3e38, 1.0]])
    scales = class_semantic_scales(features, torch.zeros(3, dtype=torch.long), 1)
    assert torch.isfinite(scales).all()
    with pytest.raises(ValueError, match="1 of 3 rows"):
        class_semantic_scales(torch.tensor([[3e38, 3e38], [1.0, float("nan")], [0.0, 1.0]]), torch.zeros(3).long(), 1)


def _blocked_size_data():
    # orders of 400 and 600 use the blocked lower products; 40 and 90 the single products; both factorisations
    generator = torch.Generator().manual_seed(5)
    counts = torch.tensor([41, 91, 401, 700])
    features = torch.randn(int(counts.sum()), 600, generator=generator) * torch.rand(600, generator=generator) + 3.0
    labels = torch.repeat_interleave(torch.arange(4), counts)
    return features, labels


def test_torch_factorisation_matches_lapack_path(monkeypatch):
    from semscale_hf.core import _linalg

    features, labels = _blocked_size_data()
    lapack = class_semantic_scales(features, labels, 4)
    monkeypatch.setattr(_linalg, "lapack_potrf", lambda: None)  # as without SciPy: torch.linalg.cholesky_ex
    torch_path = class_semantic_scales(features, labels, 4)
    np.testing.assert_allclose(torch_path.numpy(), lapack.numpy(), rtol=1e-12)
    want = reference_class_scales(features.double().numpy(), labels.numpy(), 4)
    np.testing.assert_allclose(lapack.numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_failed_factorisations_are_recomputed(monkeypatch, dtype):
    # float32 products are redone in float64; float64 ones by eigenvalues (rounding left them not positive definite)
    from semscale_hf.core import _linalg

    features, labels = _blocked_size_data()
    features = features.to(dtype)
    factorise = _linalg.logdets_lower
    calls = []

    def fail_every_other(matrix):  # odd calls fail; a float32 retry is then the next, even call
        calls.append(matrix.shape)
        logdets, failed = factorise(matrix)
        if len(calls) % 2 == 1:
            failed[::2] = True
            logdets[::2] = float("nan")
        return logdets, failed

    monkeypatch.setattr(_linalg, "logdets_lower", fail_every_other)
    got = class_semantic_scales(features, labels, 4)
    want = reference_class_scales(features.double().numpy(), labels.numpy(), 4)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    assert len(calls) >= 3


def test_blas_threads_are_limited_only_during_the_call(monkeypatch):
    # SciPy's BLAS runs on one thread inside the computation (its spinning threads slow torch's down) and gets its
    # thread count back afterwards: user code keeps its own settings
    from threadpoolctl import threadpool_info

    from semscale_hf.core import _linalg

    seen = []
    factorise = _linalg.cpu_potrf_logdets

    def spy(matrix):
        seen.append(
            {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
        )
        return factorise(matrix)

    monkeypatch.setattr(_linalg, "cpu_potrf_logdets", spy)
    features, labels = _blocked_size_data()
    _linalg.blas_controller()  # loads SciPy's BLAS, so that `before` lists it
    before = {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    class_semantic_scales(features, labels, 4)
    after = {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    assert seen and all(set(threads.values()) == {1} for threads in seen)
    assert after == before


def test_features_that_require_grad_are_differentiated_through_torch():
    features, labels = _blocked_size_data()
    leaf = features[:200].double().requires_grad_()
    scale = semantic_scale(leaf)  # order 199: the LAPACK path without autograd, torch's with it
    scale.backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    np.testing.assert_allclose(float(scale.detach()), reference_scale(leaf.detach().numpy()), rtol=1e-10)
    # the gradient of 1/2 log2 det(I + a/m Zc^T Zc) is a/(m ln 2) Zc (I + a/m Zc^T Zc)^-1
    z = leaf.detach() - leaf.detach().mean(0)
    m, d = z.shape
    inverse = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + (d / m) * z.T @ z)
    torch.testing.assert_close(leaf.grad, (d / (m * math.log(2.0))) * z @ inverse, rtol=1e-6, atol=1e-12)
