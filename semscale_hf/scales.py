r"""Semantic scale of classes (Ma et al., "Delving into Semantic Scale Imbalance", ICLR 2023).

For the `m` feature vectors of one class, stacked as the rows of `Z` (shape `(m, d)`):

$$ S(Z) = \tfrac{1}{2} \log_2 \det\big(I_d + \tfrac{\alpha}{m} Z_c^\top Z_c\big), \qquad Z_c = Z - \bar{Z} $$

Numerics (see the README, "Defaults and why"):

* No determinant is ever formed: `det` overflows to inf for realistic sizes (500 features of dimension 768 with
  `alpha = d`); the log-determinant is the sum of the log-diagonal of a Cholesky factor, in float64.
* Sylvester's identity `det(I_d + c Zc^T Zc) = det(I_m + c Zc Zc^T)` lets every class work in `min(m, d)` dimensions:
  tail classes have few samples, so their Gram matrix is tiny.
* Classes are processed in buckets of similar size, zero-padded to the bucket's largest class: a zero row adds a
  zero row and column to the Gram matrix, hence a factor 1 to the determinant, so padding changes nothing.
* Products run in float32 for half and single precision inputs (float64 for float64 inputs); the `I +` term keeps
  every eigenvalue at least 1, so rounding in the products moves the result by far less than 1e-4 relative. The
  mean used for centring is accumulated in float64. Pass `compute_dtype=torch.float64` for an all-float64 run.

This module imports only torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ._validation import IGNORE_INDEX, check_features, check_labels, check_num_classes, resolve_alpha


__all__ = ["class_semantic_scales", "semantic_scale"]

_LN2 = math.log(2.0)
# A bucket holds classes whose counts lie within this ratio of the bucket's smallest class (plus a few rows of
# slack for the tiny tail classes), which bounds the padding overhead of a bucket's batched products.
_BUCKET_RATIO = 1.25
_BUCKET_SLACK = 8
_MIN_BUCKET_BYTES = 32 * 2**20


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
            The constant in `I + alpha/m Zc^T Zc`; `"dim"` uses the feature dimension `d` (the paper's coding-rate form).
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
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    dim = features.shape[1]
    scale_alpha = resolve_alpha(alpha, dim)
    if compute_dtype is None:
        compute_dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    if not compute_dtype.is_floating_point or compute_dtype.itemsize < 4:
        raise ValueError(f"compute_dtype must be torch.float32 or torch.float64, got {compute_dtype}")

    kept = labels != ignore_index
    if not bool(kept.all()):
        features, labels = features[kept], labels[kept]

    counts = torch.bincount(labels, minlength=num_classes)
    scales = torch.full((num_classes,), float("nan"), dtype=torch.float64, device=features.device)
    if dim == 0:  # no feature dimension: the determinant of an empty matrix is 1
        scales[counts >= min_count] = 0.0
        return scales
    order = torch.argsort(labels, stable=True)  # row ids grouped by class, without copying the features
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    counts_list = counts.tolist()
    measured = sorted((c for c in range(num_classes) if counts_list[c] >= min_count), key=counts_list.__getitem__)
    budget = max(features.numel() * features.element_size() // 2, _MIN_BUCKET_BYTES)

    for bucket in _buckets(measured, counts_list, dim, budget, compute_dtype.itemsize):
        bucket_counts = torch.tensor([counts_list[c] for c in bucket], device=features.device)
        bucket_starts = torch.tensor([starts[c] for c in bucket], device=features.device)
        logdets = _bucket_logdets(
            features, order, bucket_starts, bucket_counts, scale_alpha, center, normalize, compute_dtype
        )
        scales[torch.tensor(bucket, device=features.device)] = logdets / (2.0 * _LN2)
    return scales


def _buckets(classes: list[int], counts: list[int], dim: int, budget: int, itemsize: int) -> Iterator[list[int]]:
    """Groups classes (sorted by count) into buckets of similar size, form and bounded memory."""
    bucket: list[int] = []
    for c in classes:
        m = counts[c]
        if bucket:
            first, gram = counts[bucket[0]], counts[bucket[0]] <= dim
            n = min(m, dim)
            bytes_needed = (len(bucket) + 1) * (m * dim * itemsize + n * n * (itemsize + 8))
            if (m <= dim) != gram or m > first * _BUCKET_RATIO + _BUCKET_SLACK or bytes_needed > budget:
                yield bucket
                bucket = []
        bucket.append(c)
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
    dim = features.shape[1]
    offsets = torch.arange(rows, device=features.device)
    valid = offsets[None, :] < counts[:, None]  # (B, M): padding rows are False
    index = starts[:, None] + torch.where(valid, offsets[None, :], 0)
    x = features[order[index]].to(compute_dtype)  # (B, M, d)
    if normalize:
        x = F.normalize(x, dim=-1)
    counts64 = counts.to(torch.float64)
    if center:
        # Padding rows repeat the class's first row; they are masked out of the mean and zeroed below.
        mean = (x * valid[..., None]).sum(dim=1, dtype=torch.float64) / counts64[:, None]
        x -= mean.to(compute_dtype)[:, None, :]
    x *= valid[..., None]
    x *= torch.sqrt(alpha / counts64).to(compute_dtype)[:, None, None]
    gram = x @ x.transpose(1, 2) if rows <= dim else x.transpose(1, 2) @ x
    logdets, failed = _logdet_identity_plus(gram.to(torch.float64))
    if bool(failed.any()):
        retry = failed.nonzero().flatten()
        if compute_dtype != torch.float64:  # float32 products can overflow for huge feature values
            logdets[retry] = _bucket_logdets(
                features, order, starts[retry], counts[retry], alpha, center, normalize, torch.float64
            )
        else:  # rounding left the matrix not numerically positive definite
            eigenvalues = torch.linalg.eigvalsh(gram[retry].to(torch.float64))
            logdets[retry] = torch.log1p(eigenvalues.clamp_min(0.0)).sum(-1)
    return logdets


def _logdet_identity_plus(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log det(I + G) for a batch of symmetric PSD float64 matrices, by Cholesky; also returns the failed mask."""
    shifted = gram.clone()
    shifted.diagonal(dim1=-2, dim2=-1).add_(1.0)
    factor, info = torch.linalg.cholesky_ex(shifted)
    logdets = 2.0 * factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    failed = (info != 0) | ~torch.isfinite(logdets)
    return logdets, failed
