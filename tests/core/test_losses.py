"""Tests for semscale_hf.core.losses against float64 per-sample loop references written with `math`."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from semscale_hf.core.losses import (
    BASE_LOSSES,
    class_weighted_loss,
    focal_loss,
    ldam_loss,
    ldam_margins,
    weighted_cross_entropy,
)


IGNORE = -100


# ---------------------------------------------------------------------------------------------------------------------
# Plain references: one sample at a time, Python floats, math.log / math.exp.
# ---------------------------------------------------------------------------------------------------------------------


def _nll_row(row: list[float]) -> list[float]:
    """-log softmax of one row, by hand (log-sum-exp with the max subtracted)."""
    top = max(row)
    log_sum = top + math.log(sum(math.exp(x - top) for x in row))
    return [log_sum - x for x in row]


def ref_ce(row, y, label_smoothing=0.0):
    nll = _nll_row(row)
    return (1 - label_smoothing) * nll[y] + label_smoothing / len(row) * sum(nll)


def ref_focal(row, y, gamma):
    nll = _nll_row(row)[y]
    return (1 - math.exp(-nll)) ** gamma * nll


def ref_margins(counts, max_margin):
    raw = [n**-0.25 if n > 0 else None for n in counts]
    largest = max((r for r in raw if r is not None), default=None)
    return [max_margin if r is None else r * max_margin / largest for r in raw]


def ref_ldam(row, y, counts, max_margin, scale):
    margins = ref_margins(counts, max_margin)
    shifted = [scale * (x - margins[y] if c == y else x) for c, x in enumerate(row)]
    return _nll_row(shifted)[y]


def ref_reduce(per_sample_fn, logits, labels, weights=None, num_items=None, ignore_index=IGNORE):
    """sum_i w_{y_i} * l_i over non-ignored rows, divided by the item count (never by the sum of weights)."""
    rows, ys = logits.double().tolist(), labels.tolist()
    total, count = 0.0, 0
    for row, y in zip(rows, ys, strict=True):
        if y == ignore_index:
            continue
        w = 1.0 if weights is None else float(weights[y])
        total += w * per_sample_fn(row, y)
        count += 1
    denominator = count if num_items is None else num_items
    return total / max(denominator, 1)


def _batch(batch=8, num_classes=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(batch, num_classes, generator=gen)).to(dtype)
    labels = torch.randint(0, num_classes, (batch,), generator=gen)
    weights = torch.rand(num_classes, generator=gen, dtype=torch.float64) * 3 + 0.2
    return logits, labels, weights


COUNTS = [500, 120, 30, 7, 1]


# ---------------------------------------------------------------------------------------------------------------------
# Cross-entropy
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_weights_equal_f_cross_entropy(dtype):
    logits, labels, _ = _batch(dtype=dtype)
    expected = F.cross_entropy(logits, labels)
    torch.testing.assert_close(weighted_cross_entropy(logits, labels), expected)
    torch.testing.assert_close(weighted_cross_entropy(logits, labels, torch.ones(5)), expected)


@pytest.mark.parametrize("label_smoothing", [0.1, 0.35, 1.0])
def test_label_smoothing_matches_f_cross_entropy_and_reference(label_smoothing):
    logits, labels, weights = _batch()
    labels[2] = IGNORE
    got = weighted_cross_entropy(logits, labels, torch.ones(5), label_smoothing=label_smoothing)
    expected = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, ignore_index=IGNORE)
    torch.testing.assert_close(got, expected)
    # With weights, each sample's whole smoothed loss is scaled by its class weight.
    got = weighted_cross_entropy(logits, labels, weights, label_smoothing=label_smoothing)
    want = ref_reduce(lambda r, y: ref_ce(r, y, label_smoothing), logits, labels, weights)
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_weighted_ce_divides_by_item_count_not_weight_sum():
    logits, labels, weights = _batch()
    got = weighted_cross_entropy(logits, labels, weights)
    want = ref_reduce(ref_ce, logits, labels, weights)
    assert got.item() == pytest.approx(want, rel=1e-12)
    # F.cross_entropy(weight=...) divides by sum_i w_{y_i}: a different number...
    torch_mean = F.cross_entropy(logits, labels, weight=weights)
    assert not torch.allclose(got, torch_mean)
    # ...exactly ours times n / sum(w_y).
    torch.testing.assert_close(torch_mean, got * len(labels) / weights[labels].sum())


def test_float32_logits_match_float64_reference():
    logits, labels, weights = _batch(dtype=torch.float32, seed=3)
    got = weighted_cross_entropy(logits, labels, weights.float())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref_reduce(ref_ce, logits, labels, weights.float()), rel=1e-5)


def test_weights_as_python_list_and_any_float_dtype():
    logits, labels, weights = _batch()
    expected = weighted_cross_entropy(logits, labels, weights)
    torch.testing.assert_close(weighted_cross_entropy(logits, labels, weights.tolist()), expected)
    half = weights.half()
    torch.testing.assert_close(
        weighted_cross_entropy(logits, labels, half), weighted_cross_entropy(logits, labels, half.double())
    )


# ---------------------------------------------------------------------------------------------------------------------
# Focal
# ---------------------------------------------------------------------------------------------------------------------


def test_focal_gamma_zero_equals_cross_entropy():
    logits, labels, weights = _batch(seed=1)
    torch.testing.assert_close(
        focal_loss(logits, labels, weights, gamma=0.0), weighted_cross_entropy(logits, labels, weights)
    )
    logits.requires_grad_(True)
    focal_loss(logits, labels, weights, gamma=0.0).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.7])
def test_focal_matches_reference(gamma):
    logits, labels, weights = _batch(seed=2)
    labels[0] = IGNORE
    got = focal_loss(logits, labels, weights, gamma=gamma)
    want = ref_reduce(lambda r, y: ref_focal(r, y, gamma), logits, labels, weights)
    assert got.item() == pytest.approx(want, rel=1e-10)
    # Focusing down-weights easy samples, so the loss is below cross-entropy.
    assert got < weighted_cross_entropy(logits, labels, weights)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradient_finite_for_confident_predictions(gamma):
    # p_y == 1 in float32: 1 - p_y is exactly 0, where x**gamma has an infinite slope for gamma < 1.
    logits = torch.tensor([[60.0, -60.0, 0.0], [0.0, 1.0, 2.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    loss = focal_loss(logits, labels, gamma=gamma)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------------------------------------------------------
# LDAM
# ---------------------------------------------------------------------------------------------------------------------


def test_ldam_margins():
    margins = ldam_margins(COUNTS, max_margin=0.5)
    assert margins.dtype == torch.float64
    torch.testing.assert_close(margins, torch.tensor(ref_margins(COUNTS, 0.5), dtype=torch.float64))
    assert margins.max().item() == pytest.approx(0.5)
    assert (margins.diff() > 0).all()  # rarer class, larger margin
    # A class without samples gets the largest margin; the others are rescaled among themselves.
    torch.testing.assert_close(ldam_margins([16, 0, 1], 0.4), torch.tensor([0.2, 0.4, 0.4], dtype=torch.float64))
    torch.testing.assert_close(ldam_margins([0, 0], 0.3), torch.tensor([0.3, 0.3], dtype=torch.float64))
    torch.testing.assert_close(ldam_margins(torch.tensor([5, 5]), 0.0), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("counts", [COUNTS, [40, 0, 9, 1, 3]])
@pytest.mark.parametrize(("max_margin", "scale"), [(0.5, 30.0), (0.3, 10.0)])
def test_ldam_matches_reference(counts, max_margin, scale):
    logits, labels, weights = _batch(seed=4)
    logits = torch.tanh(logits)  # cosine-like logits, as LDAM expects with scale 30
    labels[5] = IGNORE
    got = ldam_loss(logits, labels, weights, class_counts=counts, max_margin=max_margin, scale=scale)
    want = ref_reduce(lambda r, y: ref_ldam(r, y, counts, max_margin, scale), logits, labels, weights)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_ldam_zero_margin_is_scaled_cross_entropy():
    logits, labels, weights = _batch(seed=5)
    got = ldam_loss(logits, labels, weights, class_counts=COUNTS, max_margin=0.0, scale=2.0)
    torch.testing.assert_close(got, weighted_cross_entropy(2.0 * logits, labels, weights))


# ---------------------------------------------------------------------------------------------------------------------
# Dispatch, ignore_index, reduction contract
# ---------------------------------------------------------------------------------------------------------------------

LOSS_OPTIONS = {
    "ce": {"label_smoothing": 0.1},
    "focal": {"gamma": 2.0},
    "ldam": {"class_counts": COUNTS, "scale": 5.0},
}


def test_dispatch_matches_public_functions():
    assert set(BASE_LOSSES) == {"ce", "focal", "ldam"}
    logits, labels, weights = _batch(seed=6)
    torch.testing.assert_close(
        class_weighted_loss("ce", logits, labels, weights, label_smoothing=0.1),
        weighted_cross_entropy(logits, labels, weights, label_smoothing=0.1),
    )
    torch.testing.assert_close(
        class_weighted_loss("focal", logits, labels, weights, gamma=1.5),
        focal_loss(logits, labels, weights, gamma=1.5),
    )
    torch.testing.assert_close(
        class_weighted_loss("ldam", logits, labels, weights, class_counts=COUNTS),
        ldam_loss(logits, labels, weights, class_counts=COUNTS),
    )


@pytest.mark.parametrize("name", sorted(LOSS_OPTIONS))
@pytest.mark.parametrize("ignore_index", [IGNORE, -1, 7])
def test_ignored_rows_are_excluded(name, ignore_index):
    logits, labels, weights = _batch(seed=7)
    labels[[1, 4]] = ignore_index
    keep = labels != ignore_index
    opts = LOSS_OPTIONS[name]
    logits.requires_grad_(True)
    loss = class_weighted_loss(name, logits, labels, weights, ignore_index=ignore_index, **opts)
    sub = class_weighted_loss(name, logits[keep].detach(), labels[keep], weights, **opts)
    torch.testing.assert_close(loss, sub)
    loss.backward()
    assert (logits.grad[~keep] == 0).all()
    assert (logits.grad[keep] != 0).any()
    # Whatever an ignored row holds (here NaN and inf) cannot leak into the loss.
    poisoned = logits.detach().clone()
    poisoned[1] = float("nan")
    poisoned[4] = float("inf")
    torch.testing.assert_close(
        class_weighted_loss(name, poisoned, labels, weights, ignore_index=ignore_index, **opts), loss.detach()
    )


@pytest.mark.parametrize("name", sorted(LOSS_OPTIONS))
def test_all_ignored_gives_connected_zero(name):
    logits = torch.randn(3, 5, requires_grad=True)
    labels = torch.full((3,), IGNORE)
    for num_items in (None, 0, 4, torch.tensor(0)):
        loss = class_weighted_loss(name, logits, labels, torch.rand(5), num_items=num_items, **LOSS_OPTIONS[name])
        assert loss.dtype == torch.float32 and loss.item() == 0.0
        assert loss.requires_grad
        (grad,) = torch.autograd.grad(loss, logits)
        assert (grad == 0).all()
    # An empty batch behaves the same.
    empty = torch.zeros(0, 5, requires_grad=True)
    loss = class_weighted_loss(name, empty, torch.zeros(0, dtype=torch.long), **LOSS_OPTIONS[name])
    loss.backward()
    assert loss.item() == 0.0


def test_num_items_as_int_and_tensor():
    logits, labels, weights = _batch(seed=8)
    want = ref_reduce(ref_ce, logits, labels, weights, num_items=20)
    assert weighted_cross_entropy(logits, labels, weights, num_items=20).item() == pytest.approx(want, rel=1e-12)
    got = weighted_cross_entropy(logits, labels, weights, num_items=torch.tensor(20))
    assert got.dtype == torch.float64 and got.item() == pytest.approx(want, rel=1e-12)
    got32 = weighted_cross_entropy(logits.float(), labels, weights, num_items=torch.tensor([20]))
    assert got32.dtype == torch.float32


# Hypothesis draws small batches of 4: logits, labels (some possibly ignored) and positive weights.
@st.composite
def _four_rows(draw, allow_ignored: bool):
    num_classes = draw(st.integers(2, 6))
    finite = st.floats(-8, 8, allow_nan=False, width=32)
    logits = torch.tensor(
        draw(st.lists(finite, min_size=4 * num_classes, max_size=4 * num_classes)), dtype=torch.float64
    )
    low = -1 if allow_ignored else 0
    labels = [draw(st.integers(low, num_classes - 1)) for _ in range(4)]
    labels = torch.tensor([IGNORE if y == -1 else y for y in labels])
    weights = torch.tensor(draw(st.lists(st.floats(0.05, 10.0), min_size=num_classes, max_size=num_classes)))
    counts = draw(st.lists(st.integers(0, 1000), min_size=num_classes, max_size=num_classes))
    return logits.reshape(4, num_classes), labels, weights, counts


def _options(name, counts):
    return {"ce": {"label_smoothing": 0.1}, "focal": {"gamma": 1.5}, "ldam": {"class_counts": counts, "scale": 4.0}}[
        name
    ]


def _loss_and_grad(name, logits, labels, weights, counts, **kwargs):
    logits = logits.detach().clone().requires_grad_(True)
    loss = class_weighted_loss(name, logits, labels, weights, **_options(name, counts), **kwargs)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


@settings(max_examples=60, deadline=None)
@given(data=_four_rows(allow_ignored=False), name=st.sampled_from(sorted(BASE_LOSSES)))
def test_accumulation_mean_of_equal_micro_batches(data, name):
    """4 items at once == the mean of two micro-batches of 2 (num_items=None), loss and gradient, any weights."""
    logits, labels, weights, counts = data
    full, full_grad = _loss_and_grad(name, logits, labels, weights, counts)
    parts = [_loss_and_grad(name, logits[s], labels[s], weights, counts) for s in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close(full, (parts[0][0] + parts[1][0]) / 2)
    torch.testing.assert_close(full_grad, torch.cat([parts[0][1], parts[1][1]]) / 2)


@settings(max_examples=60, deadline=None)
@given(data=_four_rows(allow_ignored=True), name=st.sampled_from(sorted(BASE_LOSSES)))
def test_accumulation_sum_with_global_num_items(data, name):
    """4 items at once == the sum over micro-batches of loss(num_items=items of the whole batch), with ignored rows."""
    logits, labels, weights, counts = data
    num_items = int((labels != IGNORE).sum())
    full, full_grad = _loss_and_grad(name, logits, labels, weights, counts)
    parts = [
        _loss_and_grad(name, logits[s], labels[s], weights, counts, num_items=num_items)
        for s in (slice(0, 1), slice(1, 4))
    ]
    torch.testing.assert_close(full, parts[0][0] + parts[1][0])
    torch.testing.assert_close(full_grad, torch.cat([parts[0][1], parts[1][1]]))
    # And it is the plain reference.
    if name == "ce":
        want = ref_reduce(lambda r, y: ref_ce(r, y, 0.1), logits, labels, weights)
        assert full.item() == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_f_cross_entropy_weight_breaks_accumulation():
    """The counter-example the reduction exists for: weight-sum normalisation depends on the micro-batch mix."""
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    weights = torch.tensor([1.0, 9.0], dtype=torch.float64)
    full = F.cross_entropy(logits, labels, weight=weights)
    halves = (
        F.cross_entropy(logits[:2], labels[:2], weight=weights)
        + F.cross_entropy(logits[2:], labels[2:], weight=weights)
    ) / 2
    assert not torch.allclose(full, halves)
    ours = weighted_cross_entropy(logits, labels, weights)
    torch.testing.assert_close(
        ours,
        (
            weighted_cross_entropy(logits[:2], labels[:2], weights)
            + weighted_cross_entropy(logits[2:], labels[2:], weights)
        )
        / 2,
    )
    by_hand = (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(1)) + 9 * math.log1p(math.exp(2))) / 4
    assert ours.item() == pytest.approx(by_hand, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(LOSS_OPTIONS))
def test_half_precision_logits_give_float32_loss_and_finite_gradients(dtype, name):
    logits32, labels, weights = _batch(batch=16, seed=9, dtype=torch.float32)
    labels[3] = IGNORE
    logits = (
        (logits32 * 4).to(dtype).requires_grad_(True)
    )  # large logits: a half-precision softmax would lose the tail
    loss = class_weighted_loss(name, logits, labels, weights.to(dtype), **LOSS_OPTIONS[name])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # Same value as float32 on the same (rounded) inputs: the computation itself is float32.
    same_inputs = class_weighted_loss(
        name, logits.detach().float(), labels, weights.to(dtype).float(), **LOSS_OPTIONS[name]
    )
    torch.testing.assert_close(loss.detach(), same_inputs)
    loss.backward()
    assert logits.grad.dtype == dtype and torch.isfinite(logits.grad).all()


def test_under_cpu_autocast_loss_stays_float32():
    logits, labels, weights = _batch(dtype=torch.float32, seed=10)
    layer = torch.nn.Linear(5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(logits)
        assert out.dtype == torch.bfloat16
        loss = weighted_cross_entropy(out, labels, weights)
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_weights_follow_cuda_logits():
    logits, labels, weights = _batch(dtype=torch.float32, seed=11)
    expected = ldam_loss(logits, labels, weights, class_counts=COUNTS)
    got = ldam_loss(logits.cuda().bfloat16().float(), labels.cuda(), weights, class_counts=torch.tensor(COUNTS))
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_label", [5, 17, -1])
def test_out_of_range_labels_raise(bad_label):
    logits, labels, _ = _batch()
    labels[0] = bad_label
    with pytest.raises(ValueError, match=rf"\[0, 5\).*{bad_label}"):
        weighted_cross_entropy(logits, labels)


@pytest.mark.parametrize("shape", [(4,), (6,), (5, 1), ()])
def test_wrong_weight_shape_raises(shape):
    logits, labels, _ = _batch()
    with pytest.raises(ValueError, match=r"class_weights must have shape \(5,\)"):
        weighted_cross_entropy(logits, labels, torch.ones(shape))


def test_input_errors():
    logits, labels, _ = _batch()
    with pytest.raises(ValueError, match="2-D"):
        weighted_cross_entropy(logits[0], labels[:1])
    with pytest.raises(ValueError, match="one entry per row"):
        weighted_cross_entropy(logits, labels[:-1])
    with pytest.raises(TypeError, match="integer tensor"):
        weighted_cross_entropy(logits, labels.float())
    with pytest.raises(TypeError, match="floating-point"):
        weighted_cross_entropy(labels.reshape(2, 4), labels[:2])
    with pytest.raises(ValueError, match="Unknown base loss 'dice'"):
        class_weighted_loss("dice", logits, labels)
    with pytest.raises(TypeError, match="gamma"):
        class_weighted_loss("ce", logits, labels, gamma=2.0)
    with pytest.raises(ValueError, match="num_items=3 is smaller than the 8"):
        weighted_cross_entropy(logits, labels, num_items=3)
    with pytest.raises(ValueError, match="num_items must be a scalar"):
        weighted_cross_entropy(logits, labels, num_items=torch.tensor([8, 8]))
    with pytest.raises(TypeError, match="num_items must be an int"):
        weighted_cross_entropy(logits, labels, num_items="8")


def test_option_errors():
    logits, labels, _ = _batch()
    with pytest.raises(ValueError, match="label_smoothing"):
        weighted_cross_entropy(logits, labels, label_smoothing=1.5)
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, labels, gamma=-1.0)
    with pytest.raises(ValueError, match="class_counts has 4 entries but logits have 5"):
        ldam_loss(logits, labels, class_counts=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="class_counts must be finite and >= 0"):
        ldam_loss(logits, labels, class_counts=[1, 2, -3, 4, 5])
    with pytest.raises(ValueError, match="class_counts must be 1-D"):
        ldam_margins([[1, 2]])
    with pytest.raises(ValueError, match="max_margin"):
        ldam_loss(logits, labels, class_counts=COUNTS, max_margin=-0.1)
    with pytest.raises(ValueError, match="scale"):
        ldam_loss(logits, labels, class_counts=COUNTS, scale=0.0)
