"""The batched log-determinant backend of the scale computation: blockwise products, Cholesky, LAPACK threads.

Shared by [`~semscale_hf.core.scales.class_semantic_scales`] (feature pools) and
[`~semscale_hf.core.moments.scales_from_moments`] (sufficient statistics). On CPU, float64 matrices of order at least
`LAPACK_MIN_ORDER` are factorised by SciPy's LAPACK `potrf` in place (SciPy comes with scikit-learn); elsewhere, and
without SciPy, by `torch.linalg.cholesky_ex`. This module imports torch and NumPy only (SciPy and threadpoolctl
lazily).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import numpy as np
import torch


__all__ = ["FACTOR_DTYPE", "SYMMETRIC_BLOCK", "lapack_threads", "logdets_lower", "lower_symmetric_product"]

# Products of at least 1.5 times this many rows (Gram form) or columns (scatter form) are computed in blocks of
# about this size.
SYMMETRIC_BLOCK = 256
# Dtype of the products' results and their Cholesky factorisation, for float32 products too. float32 was faster on
# the benchmark CPU but raised the error on low-rank features (tests/core/test_scales.py) by up to 3.6x, so the
# factorisation stays in float64.
FACTOR_DTYPE = torch.float64
# On CPU, matrices of at least this order are factorised by LAPACK's potrf in place (see `cpu_potrf_logdets`);
# below it torch's one batched call is faster than a call per matrix.
LAPACK_MIN_ORDER = 64


def lower_symmetric_product(x: torch.Tensor, gram: bool, out_dtype: torch.dtype) -> torch.Tensor:
    """Lower triangle of `x @ x^T` (`gram`) or `x^T @ x` for a batch `x` of shape `(B, M, d)`, as `out_dtype`.

    BLAS has no batched syrk in torch; splitting the output into k x k blocks and computing only the lower ones
    saves (k - 1) / 2k of the flops of a full product while each block product stays large enough to run near
    peak. The blocks above the diagonal blocks are left zero: every consumer (LAPACK potrf, `cholesky_ex`,
    `eigvalsh`) reads the lower triangle only. Writing each block into the `out_dtype` result converts it in the
    same pass.
    """
    n = x.shape[1] if gram else x.shape[2]
    blocks = round(n / SYMMETRIC_BLOCK)
    if blocks < 2:
        return (x @ x.transpose(1, 2) if gram else x.transpose(1, 2) @ x).to(out_dtype)
    edges = [round(i * n / blocks) for i in range(blocks + 1)]
    parts = [x[:, a:b] if gram else x[:, :, a:b].transpose(1, 2) for a, b in zip(edges, edges[1:], strict=False)]
    out = torch.zeros(x.shape[0], n, n, dtype=out_dtype, device=x.device)
    for i, (a, b) in enumerate(zip(edges, edges[1:], strict=False)):
        for j, (c, e) in enumerate(zip(edges[: i + 1], edges[1 : i + 2], strict=False)):
            out[:, a:b, c:e] = parts[i] @ parts[j].transpose(1, 2)
    return out


def logdets_lower(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log det of a batch of symmetric positive definite matrices given by their lower triangles, by Cholesky.

    Returns the log-determinants and the mask of failed factorisations. `matrix` is overwritten.
    """
    # LAPACK through NumPy on CPU; autograd (features that require grad) needs torch's differentiable factorisation
    on_cpu = matrix.device.type == "cpu" and matrix.dtype == torch.float64 and matrix.is_contiguous()
    if on_cpu and not matrix.requires_grad and matrix.shape[-1] >= LAPACK_MIN_ORDER and lapack_potrf() is not None:
        return cpu_potrf_logdets(matrix)
    factor, info = torch.linalg.cholesky_ex(matrix)  # reads the lower triangle only
    logdets = 2.0 * factor.diagonal(dim1=-2, dim2=-1).log().sum(-1, dtype=torch.float64)
    return logdets, (info != 0) | ~torch.isfinite(logdets)


def cpu_potrf_logdets(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`logdets_lower` through LAPACK potrf, in place, one matrix at a time.

    `torch.linalg.cholesky_ex` copies its input and then zeroes the upper triangle of the factor, two passes over
    column-major matrices that took more time than the factorisation itself (benchmarks/bench_scales.py, d = 2048).
    A C-contiguous matrix seen transposed is Fortran-contiguous, so potrf factorises it where it lies; its upper
    triangle in Fortran order is our lower triangle.
    """
    potrf = lapack_potrf()
    logdets, failed = [], []
    for array in matrix.numpy():  # C-contiguous float64: the output of `lower_symmetric_product`
        factor, info = potrf(array.T, lower=0, clean=0, overwrite_a=1)
        logdet = 2.0 * float(np.log(np.diagonal(factor)).sum()) if info == 0 else math.nan
        logdets.append(logdet)
        failed.append(not math.isfinite(logdet))
    return torch.tensor(logdets, dtype=torch.float64), torch.tensor(failed)


@functools.cache
def lapack_potrf():
    """SciPy's float64 LAPACK `potrf`, or None where SciPy is missing (torch's path is used then)."""
    try:
        from scipy.linalg import lapack
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return None
    return lapack.dpotrf


@functools.cache
def blas_controller():
    """threadpoolctl's controller of the loaded BLAS libraries, or None without threadpoolctl.

    Built once: listing the loaded libraries takes ~20 ms in a process that imported transformers, against 0.03 ms
    for each later `limit`. SciPy's LAPACK is loaded first, so its BLAS is among the listed libraries.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    lapack_potrf()
    return ThreadpoolController()


@contextlib.contextmanager
def lapack_threads(device: torch.device, largest_order: int) -> Iterator[None]:
    """Runs SciPy's BLAS/LAPACK on one thread while scales are computed on CPU.

    Its worker threads keep spinning after each factorisation and then compete with torch's threads for the cores
    during the next bucket's products: on 2 cores that made the whole computation 3x slower, against a
    factorisation that gains only ~20% from a second thread.
    """
    if device.type != "cpu" or largest_order < LAPACK_MIN_ORDER or lapack_potrf() is None:
        yield
        return
    controller = blas_controller()
    if controller is None:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
