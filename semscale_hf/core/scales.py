r"""Semantic scale of classes (Ma et al., "Delving into Semantic Scale Imbalance", ICLR 2023).

For the `m` feature vectors of one class, stacked as the rows of `Z` (shape `(m, d)`):

$$ S(Z) = \tfrac{1}{2} \log_2 \det\big(I_d + \tfrac{\alpha}{m} Z_c^\top Z_c\big), \qquad Z_c = Z - \bar{Z} $$

Numerics (see the README, "Defaults and why"):

* No determinant is ever formed: `det` overflows to inf for realistic sizes (500 features of dimension 768 with
  `alpha = d`); the log-determinant is the sum of the log-diagonal of a Cholesky factor of `I + G`.
* Sylvester's identity `det(I_d + c Zc^T Zc) = det(I_m + c Zc Zc^T)` lets every class work in `min(m, d)` dimensions:
  tail classes have few samples, so their Gram matrix is tiny.
* Small classes are processed in buckets of similar size, zero-padded to the bucket's largest class: a zero row adds
  a zero row and column to the Gram matrix, hence a factor 1 to the determinant, so padding changes nothing. Large
  classes are processed one at a time, without padding.
* Centring is done exactly in `m - 1` rows (a Householder reflection, see `_bucket_logdets`), so the centred
  product has no exact null direction for float32 rounding to lift off zero (that alone cost ~1e-4 relative).
  The class's last row is subtracted before anything is summed, so a large common offset cancels first.
* Only the lower triangle of each symmetric product is computed (blockwise) and factorised.
* Products run in float32 for half and single precision inputs (float64 for float64 inputs), the Cholesky
  factorisation in float64. The `I +` term keeps every eigenvalue at least 1; on full-rank features the float32
  products move the result by about 1e-7 relative (`benchmarks/bench_scales.py`). Features of low effective rank
  with a large dynamic range (directions whose `alpha/m` variance is far below the largest) can move by ~1e-3:
  pass `compute_dtype=torch.float64` there, or for any all-float64 run.

This module imports torch only; the products and factorisations are in [`~semscale_hf.core._linalg`] (on CPU through
SciPy's LAPACK, which scikit-learn brings, and `torch.linalg.cholesky_ex` without it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from . import _linalg
from ._validation import IGNORE_INDEX, check_features, check_int, check_labels, check_num_classes, resolve_alpha


__all__ = ["class_semantic_scales", "semantic_scale"]

_LN2 = math.log(2.0)
# A bucket holds classes whose counts lie within this ratio of the bucket's smallest class (plus a few rows of
# slack for the tiny tail classes), which bounds the padding overhead of a bucket's batched products.
_BUCKET_RATIO = 1.25
_BUCKET_SLACK = 8
_MIN_BUCKET_BYTES = 32 * 2**20
# A class whose product and factorisation cost at least this many flops is computed alone: its work dwarfs the
# per-call overhead, and padding it to a bucket's largest class would only add flops (up to 56% in Gram form).
_SOLO_FLOPS = 5e7


def semantic_scale(
    features: torch.Tensor,
    *,
    alpha: float | str = "dim",
    center: bool = True,
    normalize: bool = False,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Semantic scale of one class, in bits.

    Args:
        features (`torch.Tensor` of shape `(m, d)`):
            The class's feature vectors (for a classifier: the input of its classification head), any float dtype.
        alpha (`float` or `"dim"`, *optional*, defaults to `"dim"`):
            The constant in `I + alpha/m Zc^T Zc`; `"dim"` uses the feature dimension `d` (the paper's coding-rate
            form).
        center (`bool`, *optional*, defaults to `True`):
            Subtract the class mean first (as the author's code does).
        normalize (`bool`, *optional*, defaults to `False`):
            L2-normalise each feature vector before everything else.
        compute_dtype (`torch.dtype`, *optional*):
            Dtype of the matrix products; defaults to float64 for float64 input and float32 otherwise. The
            factorisation always runs in float64.

    Returns:
        `torch.Tensor`: a 0-dim float64 tensor on the input's device. One sample gives 0 when centred.

    Example:

    >>> import torch
    >>> from semscale_hf import semantic_scale
    >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    >>> round(float(semantic_scale(z, alpha=1.0)), 6)  # 1/2 log2(1 + 1/2 * 2)
    0.5
    """
    check_features(features)
    if features.shape[0] == 0:
        raise ValueError("semantic_scale needs at least one feature vector, got an empty (0, d) tensor")
    labels = torch.zeros(features.shape[0], dtype=torch.long, device=features.device)
    scales = class_semantic_scales(
        features,
        labels,
        1,
        alpha=alpha,
        center=center,
        normalize=normalize,
        min_count=1,
        compute_dtype=compute_dtype,
    )
    return scales[0]


def class_semantic_scales(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    alpha: float | str = "dim",
    center: bool = True,
    normalize: bool = False,
    min_count: int = 2,
    ignore_index: int = IGNORE_INDEX,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Semantic scale of every class, computed in batched form on the inputs' device.

    Args:
        features (`torch.Tensor` of shape `(num_samples, dim)`):
            Feature vectors, any float dtype. NaN or inf raises a `ValueError` naming how many rows are bad.
        labels (`torch.Tensor` of shape `(num_samples,)`):
            Integer class ids in `[0, num_classes)`; rows labelled `ignore_index` are skipped.
        num_classes (`int`):
            Number of classes `C`.
        alpha, center, normalize, compute_dtype:
            As in [`semantic_scale`].
        min_count (`int`, *optional*, defaults to 2):
            Classes with fewer samples are not measured and come back as NaN (a class needs two samples to have
            any spread once centred). NaN means "unmeasured", never an error; [`scales_to_weights`] gives such
            classes the largest measured weight.
        ignore_index (`int`, *optional*, defaults to -100):
            Label value of rows to skip (the Hugging Face convention).

    Returns:
        `torch.Tensor`: float64 tensor of shape `(num_classes,)`, in bits.

    Example:

    >>> import torch
    >>> from semscale_hf import class_semantic_scales
    >>> features = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    >>> labels = torch.arange(100) % 3
    >>> labels[:3] = -100  # ignored rows
    >>> class_semantic_scales(features, labels, num_classes=4).shape  # class 3 has no samples: NaN
    torch.Size([4])
    """
    check_features(features)
    check_num_classes(num_classes)
    labels = check_labels(labels, features.shape[0], num_classes, ignore_index)
    check_int("min_count", min_count, minimum=1)
    dim = features.shape[1]
    scale_alpha = resolve_alpha(alpha, dim)
    if compute_dtype is None:
        compute_dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    if not compute_dtype.is_floating_point or compute_dtype.itemsize < 4:
        raise ValueError(f"compute_dtype must be torch.float32 or torch.float64, got {compute_dtype}")

    # rows are only ever read through `order`, so ignored rows are dropped from it rather than copied away
    kept = labels != ignore_index
    rows = None if bool(kept.all()) else kept.nonzero().flatten()
    if rows is not None:
        labels = labels[rows]
    counts = torch.bincount(labels, minlength=num_classes)
    scales = torch.full((num_classes,), float("nan"), dtype=torch.float64, device=features.device)
    if dim == 0:  # no feature dimension: the determinant of an empty matrix is 1
        scales[counts >= min_count] = 0.0
        return scales
    order = torch.argsort(labels, stable=True)  # row ids grouped by class, without copying the features
    if rows is not None:
        order = rows[order]
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    counts_list = counts.tolist()
    measured = sorted((c for c in range(num_classes) if counts_list[c] >= min_count), key=counts_list.__getitem__)
    budget = max(features.numel() * features.element_size() // 2, _MIN_BUCKET_BYTES)

    # centring turns m rows into m - 1 (see _bucket_logdets), which decides between the Gram and scatter forms
    rows_list = [m - 1 if center else m for m in counts_list]
    largest_order = min(max((rows_list[c] for c in measured), default=0), dim)
    with _linalg.lapack_threads(features.device, largest_order):
        for bucket in _buckets(measured, rows_list, dim, budget, compute_dtype.itemsize):
            bucket_counts = torch.tensor([counts_list[c] for c in bucket], device=features.device)
            bucket_starts = torch.tensor([starts[c] for c in bucket], device=features.device)
            logdets = _bucket_logdets(
                features, order, bucket_starts, bucket_counts, scale_alpha, center, normalize, compute_dtype
            )
            scales[torch.tensor(bucket, device=features.device)] = logdets / (2.0 * _LN2)
    return scales


def _buckets(classes: list[int], rows: list[int], dim: int, budget: int, itemsize: int) -> Iterator[list[int]]:
    """Groups classes (sorted by row count) into buckets of similar size, form and bounded memory.

    Large classes (at least `_SOLO_FLOPS` of work) get a bucket of their own.
    """
    bucket: list[int] = []
    for c in classes:
        m = rows[c]
        n = min(m, dim)
        solo = n * n * max(m, dim) + n**3 / 3 >= _SOLO_FLOPS
        if bucket:
            first, gram = rows[bucket[0]], rows[bucket[0]] <= dim
            bytes_needed = (len(bucket) + 1) * (m * dim * itemsize + 2 * n * n * _linalg.FACTOR_DTYPE.itemsize)
            if solo or (m <= dim) != gram or m > first * _BUCKET_RATIO + _BUCKET_SLACK or bytes_needed > budget:
                yield bucket
                bucket = []
        bucket.append(c)
        if solo:
            yield bucket
            bucket = []
    if bucket:
        yield bucket


def _bucket_logdets(
    features: torch.Tensor,
    order: torch.Tensor,
    starts: torch.Tensor,
    counts: torch.Tensor,
    alpha: float,
    center: bool,
    normalize: bool,
    compute_dtype: torch.dtype,
) -> torch.Tensor:
    """Natural log-determinants of `I + alpha/m Zc^T Zc` for the classes of one bucket, shape `(B,)`."""
    rows = int(counts.max())
    num = counts.shape[0]
    dim = features.shape[1]
    offsets = torch.arange(rows, device=features.device)
    valid = offsets[None, :] < counts[:, None]  # (B, M): padding rows are False
    index = starts[:, None] + torch.where(valid, offsets[None, :], 0)
    # index_select copies whole rows (several times faster than advanced indexing with a 2-D index); the result is
    # the bucket's only copy of its features
    x = features.index_select(0, order[index.flatten()]).view(num, rows, dim).to(compute_dtype)
    if normalize:
        x /= torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(1e-12)  # as F.normalize, in place
    padded = num > 1
    if padded:
        x[(~valid).nonzero(as_tuple=True)] = 0.0  # touches the padding rows only
    if center:
        # Centring leaves m rows of rank m - 1; the Householder reflection that maps the all-ones direction to the
        # last row turns them into m - 1 rows y_i = z_i - w, w = mean + (mean - z_last) / (sqrt(m) - 1), with
        # the same product Y^T Y = Zc^T Zc. Dropping the exact null direction matters: float32 rounding of the
        # large entries would otherwise lift its eigenvalue above 0 and move small scales by ~1e-4 relative.
        # Subtracting z_last first cancels any large common offset before anything is summed, so the mean of the
        # differences is accurate in the compute dtype: w - z_last = mean(z - z_last) * sqrt(m) / (sqrt(m) - 1).
        last = x[torch.arange(num, device=x.device), counts - 1]  # (B, d), a copy
        x -= last[:, None, :]
        if padded:
            x[(~valid).nonzero(as_tuple=True)] = 0.0
        root = counts.to(compute_dtype).sqrt()[:, None]
        x -= (x.sum(dim=1) / (root * (root - 1.0)).clamp_min(1e-12))[:, None, :]
        if padded:
            x[(offsets[None, :] >= counts[:, None] - 1).nonzero(as_tuple=True)] = 0.0
        x = x[:, : rows - 1]  # the last row is zero for every class (its own last row or padding): dropped
    # float64 whatever the compute dtype
    matrix = _linalg.lower_symmetric_product(x, x.shape[1] <= dim, _linalg.FACTOR_DTYPE)
    # alpha / m is applied to the small product rather than to the (B, M, d) features
    matrix *= (alpha / counts.to(torch.float64))[:, None, None]
    matrix.diagonal(dim1=-2, dim2=-1).add_(1.0)
    logdets, failed = _linalg.logdets_lower(matrix)
    if bool(failed.any()):
        retry = failed.nonzero().flatten()
        if compute_dtype != torch.float64:  # float32 products can overflow for huge feature values
            logdets[retry] = _bucket_logdets(
                features, order, starts[retry], counts[retry], alpha, center, normalize, torch.float64
            )
        else:  # rounding left the matrix not numerically positive definite: I + G from the lower triangle again
            products = _linalg.lower_symmetric_product(x[retry], x.shape[1] <= dim, torch.float64)
            products *= (alpha / counts[retry].to(torch.float64))[:, None, None]
            eigenvalues = torch.linalg.eigvalsh(products)  # reads the lower triangle only
            logdets[retry] = torch.log1p(eigenvalues.clamp_min(0.0)).sum(-1)
    return logdets
