"""Benchmark of `class_semantic_scales` against the naive per-class NumPy loop, with the arithmetic's lower bound.

Shape by default: ImageNet-LT-like, 1,000 classes with counts decaying geometrically from 1,280 to 5, d = 768 and 2048.

    python benchmarks/bench_scales.py --quick                       # 200 classes, counts 640 -> 5, d 256 and 768
    python benchmarks/bench_scales.py --dims 768 2048 --naive-classes 50
    python benchmarks/bench_scales.py --device cuda                 # GPU timings (synchronised)

What is measured, in one run and on the same data:

* ours: `class_semantic_scales(features, labels, C)` with its defaults (float32 products), best of `--repeats`;
* naive: the loop users write today, one `d x d` float64 `np.linalg.slogdet` per class. It can run on a subset of
  classes (`--naive-classes`, evenly spaced over the sorted counts) and is then extrapolated linearly to all classes;
  the output says so;
* lower bound: `sum_c [min(m_c, d)^2 max(m_c, d) + min(m_c, d)^3 / 3]` flops (a symmetric product counted as a syrk,
  plus a Cholesky) divided by the best float32 GEMM throughput measured in the same run;
* library bound: the same flops, the products priced at that GEMM throughput and the Cholesky at the best float64
  Cholesky throughput of the factorisation library measured in the same run (the factorisation must be float64,
  and on CPU float64 LAPACK potrf runs at a fraction of float32 GEMM speed);
* per-size library bound: as the library bound, but each class's factorisation priced at the throughput the library
  reaches for matrices of that class's order (measured in the same run at powers of two, best over thread counts,
  interpolated in log-log between them). The library bound prices an order-256 factorisation at the speed of an
  order-1024 one, which no order-256 factorisation reaches; this bound shows how far the code is from what the
  libraries do at the sizes they are given;
* accuracy: relative error against `compute_dtype=torch.float64` (all classes) and against the naive float64 loop;
* peak memory: extra memory of one call, relative to the feature matrix (see `_peak_extra_bytes`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from semscale_hf import class_semantic_scales


GOAL_SPEEDUP = 4.0
GOAL_BOUND_RATIO = 2.0
GOAL_REL_ERROR = 1e-4
GOAL_MEMORY_RATIO = 2.0


def make_counts(num_classes: int, max_count: int, min_count: int) -> np.ndarray:
    """Counts decaying geometrically from `max_count` (class 0) to `min_count` (the last class)."""
    if num_classes == 1:
        return np.array([max_count])
    ratio = (min_count / max_count) ** (np.arange(num_classes) / (num_classes - 1))
    return np.maximum(np.round(max_count * ratio).astype(np.int64), 1)


def make_data(counts: np.ndarray, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 features from class-dependent anisotropic Gaussians, with shuffled labels."""
    generator = torch.Generator().manual_seed(seed)
    num_classes = len(counts)
    labels = torch.repeat_interleave(torch.arange(num_classes), torch.from_numpy(counts))
    labels = labels[torch.randperm(len(labels), generator=generator)]
    features = torch.randn(len(labels), dim, generator=generator)
    order = torch.argsort(labels, stable=True)
    start = 0
    for c, m in enumerate(counts.tolist()):
        rows = order[start : start + m]
        start += m
        # every class has its own mean and per-dimension spread (log-normal), so classes differ in scale
        spread = torch.exp(0.5 * torch.randn(dim, generator=generator)) * (0.5 + c % 7 / 7)
        mean = torch.randn(dim, generator=generator)
        features[rows] = features[rows] * spread + mean
    return features, labels


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, repeats: int, device: torch.device) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), times


def gemm_throughput(device: torch.device, sizes: tuple[int, ...] = (512, 1024, 2048, 3072)) -> tuple[float, dict]:
    """Best float32 matmul throughput in flop/s over a few square sizes (2 n^3 flops per product)."""
    per_size = {}
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        a @ b  # warm-up
        seconds, _ = best_time(lambda a=a, b=b: a @ b, 5, device)
        per_size[n] = 2 * n**3 / seconds
    return max(per_size.values()), per_size


def cholesky_throughput(device: torch.device, sizes: tuple[int, ...] = (256, 512, 1024)) -> tuple[float, dict]:
    """Best float64 Cholesky throughput in flop/s (n^3 / 3 flops), as the library computes it.

    CPU: SciPy's LAPACK potrf in place, on one thread and on all threads (`semantic_scale` uses one, see
    `semscale_hf.core._linalg.lapack_threads`); CUDA: `torch.linalg.cholesky_ex` on a batch of 8.
    """
    per_size = {}
    for n in sizes:
        a = torch.randn(n, 2 * n, dtype=torch.float64, device=device)
        spd = a @ a.T / n + torch.eye(n, dtype=torch.float64, device=device)
        if device.type == "cuda":
            batch = spd.expand(8, n, n).contiguous()
            torch.linalg.cholesky_ex(batch)  # warm-up
            seconds, _ = best_time(lambda batch=batch: torch.linalg.cholesky_ex(batch), 5, device)
            per_size[n] = 8 * n**3 / 3 / seconds
            continue
        from scipy.linalg import lapack
        from threadpoolctl import threadpool_limits

        array = spd.numpy()
        for threads in (1, None):
            with threadpool_limits(limits=threads, user_api="blas"):
                times = []
                for _ in range(5):
                    work = array.copy()
                    start = time.perf_counter()
                    lapack.dpotrf(work.T, lower=0, clean=0, overwrite_a=1)
                    times.append(time.perf_counter() - start)
            per_size[(n, threads or "all")] = n**3 / 3 / min(times)
    return max(per_size.values()), per_size


def cholesky_seconds_by_order(device: torch.device, largest: int) -> dict[int, float]:
    """Best seconds of one float64 factorisation of order n, as the library computes it, for n = 8, 16, ... largest.

    Orders below `LAPACK_MIN_ORDER` (and any order on CUDA) go through `torch.linalg.cholesky_ex` on a batch, priced
    per matrix; larger ones on CPU through SciPy's LAPACK potrf in place, one call per matrix, on one thread and on
    all threads (the best of both counts).
    """
    from semscale_hf.core._linalg import LAPACK_MIN_ORDER

    orders = [2**k for k in range(3, max(3, math.ceil(math.log2(max(largest, 8)))) + 1)]
    seconds = {}
    for n in orders:
        a = torch.randn(n, 2 * n, dtype=torch.float64, device=device)
        spd = a @ a.T / n + torch.eye(n, dtype=torch.float64, device=device)
        if device.type == "cuda" or n < LAPACK_MIN_ORDER:
            batch = spd.expand(max(1, 2**16 // n), n, n).contiguous()
            torch.linalg.cholesky_ex(batch)  # warm-up
            best, _ = best_time(lambda batch=batch: torch.linalg.cholesky_ex(batch), 5, device)
            seconds[n] = best / batch.shape[0]
            continue
        from scipy.linalg import lapack
        from threadpoolctl import threadpool_limits

        array = spd.numpy()
        times = []
        for threads in (1, None):
            with threadpool_limits(limits=threads, user_api="blas"):
                for _ in range(5):
                    work = array.copy()
                    start = time.perf_counter()
                    lapack.dpotrf(work.T, lower=0, clean=0, overwrite_a=1)
                    times.append(time.perf_counter() - start)
        seconds[n] = min(times)
    return seconds


def per_size_cholesky_seconds(counts: np.ndarray, dim: int, seconds: dict[int, float], min_count: int = 2) -> float:
    """Seconds of every class's factorisation, each at the throughput measured for its order (log-log interpolated)."""
    orders = np.array(sorted(seconds), dtype=np.float64)
    throughput = np.array([n**3 / 3 / seconds[int(n)] for n in orders])
    small = np.minimum(counts[counts >= min_count], dim).astype(np.float64)
    rate = np.exp(np.interp(np.log(small), np.log(orders), np.log(throughput)))
    return float(np.sum(small**3 / 3 / rate))


def bound_flops(counts: np.ndarray, dim: int, min_count: int = 2) -> tuple[float, float]:
    """Flops of the symmetric products (counted as syrk) and of the Cholesky factorisations."""
    counts = counts[counts >= min_count].astype(np.float64)
    small = np.minimum(counts, dim)
    large = np.maximum(counts, dim)
    return float(np.sum(small**2 * large)), float(np.sum(small**3 / 3))


def lower_bound_flops(counts: np.ndarray, dim: int, min_count: int = 2) -> float:
    return sum(bound_flops(counts, dim, min_count))


def naive_scales(features: np.ndarray, labels: np.ndarray, classes: list[int], alpha: float) -> dict[int, float]:
    """What users write today: one d x d float64 slogdet per class."""
    out = {}
    dim = features.shape[1]
    for c in classes:
        z = features[labels == c].astype(np.float64)
        z = z - z.mean(axis=0)
        sign, logdet = np.linalg.slogdet(np.eye(dim) + (alpha / len(z)) * (z.T @ z))
        out[c] = 0.5 * logdet / math.log(2.0) if sign > 0 else math.nan
    return out


def read_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _memory_probe(args: argparse.Namespace) -> None:
    """Runs in a fresh subprocess: builds the data, resets the RSS high-water mark, makes one call, prints JSON.

    `tracemalloc` does not see torch's allocations and `ru_maxrss` cannot be reset, so the probe writes "5" to
    /proc/self/clear_refs, which resets VmHWM to the current RSS (Linux >= 4.0), and reads VmHWM after the call:
    the difference is the peak extra resident memory of the call. A fresh process keeps freed-but-retained heap
    pages of earlier work from hiding allocations. A tiny warm-up call first loads BLAS/LAPACK buffers.
    """
    counts = make_counts(args.classes, args.max_count, args.min_count)
    features, labels = make_data(counts, args.probe_dim, args.seed)
    class_semantic_scales(torch.randn(256, 96), torch.arange(256) % 2, 2)  # loads LAPACK (SciPy) too
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    baseline = read_status_kib("VmRSS")
    class_semantic_scales(features, labels, args.classes)
    peak = read_status_kib("VmHWM")
    print(json.dumps({"extra_bytes": (peak - baseline) * 1024, "feature_bytes": features.numel() * 4}))


def _peak_extra_bytes(args: argparse.Namespace, dim: int, device: torch.device, features, labels) -> int | None:
    """Peak memory the call allocates beyond its inputs: CUDA allocator stats, or a subprocess probe on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        class_semantic_scales(features, labels, args.classes)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - baseline
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    command = [sys.executable, os.path.abspath(__file__), "--_probe-dim", str(dim)]
    command += ["--classes", str(args.classes), "--max-count", str(args.max_count)]
    command += ["--min-count", str(args.min_count), "--seed", str(args.seed)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["extra_bytes"]


def time_breakdown(features: torch.Tensor, labels: torch.Tensor, num_classes: int, top: int = 8) -> list[str]:
    """Self time of the most expensive torch operators in one call (what dominates our time)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if features.is_cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        class_semantic_scales(features, labels, num_classes)
        synchronize(features.device)
    key = "self_device_time_total" if features.is_cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events) or 1.0
    return [
        f"    {e.key:<38} {getattr(e, key) / 1e6:8.3f} s  {100 * getattr(e, key) / total:5.1f}%" for e in events[:top]
    ]


def run_shape(args: argparse.Namespace, dim: int, device: torch.device) -> dict:
    counts = make_counts(args.classes, args.max_count, args.min_count)
    num_samples = int(counts.sum())
    print(
        f"\n=== C={args.classes}, counts {args.max_count}->{args.min_count} (N={num_samples}), d={dim}, {device}, "
        f"load average {os.getloadavg()[0]:.1f} ==="
    )
    start = time.perf_counter()
    features_cpu, labels_cpu = make_data(counts, dim, args.seed)
    print(
        f"data: {features_cpu.numel() * 4 / 2**30:.2f} GiB float32 features, built in "
        f"{time.perf_counter() - start:.1f} s"
    )
    features, labels = features_cpu.to(device), labels_cpu.to(device)

    peak, per_size = gemm_throughput(device)
    sizes = ", ".join(f"{n}: {flops / 1e9:.0f}" for n, flops in per_size.items())
    print(f"float32 GEMM throughput (GFLOP/s by size): {sizes}; best {peak / 1e9:.1f}")
    product_flops, cholesky_flops = bound_flops(counts, dim)
    bound = (product_flops + cholesky_flops) / peak
    print(
        f"lower bound: {(product_flops + cholesky_flops) / 1e9:.1f} GFLOP / {peak / 1e9:.1f} GFLOP/s = {bound:.3f} s"
    )
    print("  (the formula counts the symmetric product at min^2*max flops, a syrk; a plain GEMM costs twice that)")
    cholesky_peak, cholesky_sizes = cholesky_throughput(device)
    sizes = ", ".join(f"{key}: {flops / 1e9:.0f}" for key, flops in cholesky_sizes.items())
    library_bound = product_flops / peak + cholesky_flops / cholesky_peak
    print(f"float64 Cholesky throughput (GFLOP/s by size, threads): {sizes}; best {cholesky_peak / 1e9:.1f}")
    print(
        f"library bound: {product_flops / 1e9:.1f} GFLOP products / {peak / 1e9:.1f} + {cholesky_flops / 1e9:.1f} "
        f"GFLOP Cholesky / {cholesky_peak / 1e9:.1f} GFLOP/s = {library_bound:.3f} s"
    )

    by_order = cholesky_seconds_by_order(device, int(min(counts.max(), dim)))
    sizes = ", ".join(f"{n}: {n**3 / 3 / seconds / 1e9:.1f}" for n, seconds in by_order.items())
    per_size_bound = product_flops / peak + per_size_cholesky_seconds(counts, dim, by_order)
    print(f"float64 Cholesky throughput as the library calls it (GFLOP/s by order, best over threads): {sizes}")
    print(
        f"per-size library bound: products as above + each class's Cholesky at its order's throughput "
        f"= {per_size_bound:.3f} s"
    )

    class_semantic_scales(features[:1000], labels[:1000], args.classes)  # warm-up
    ours_time, ours_times = best_time(
        lambda: class_semantic_scales(features, labels, args.classes), args.repeats, device
    )
    ours = class_semantic_scales(features, labels, args.classes).cpu()
    print(f"ours: best {ours_time:.3f} s of {', '.join(f'{t:.3f}' for t in ours_times)}")
    print("  where the time goes (self time of torch operators, one profiled call):")
    print("\n".join(time_breakdown(features, labels, args.classes)))

    start = time.perf_counter()
    exact = class_semantic_scales(features, labels, args.classes, compute_dtype=torch.float64).cpu()
    synchronize(device)
    print(f"float64 reference (compute_dtype=torch.float64): {time.perf_counter() - start:.3f} s")

    measured = [c for c in range(args.classes) if counts[c] >= 2]
    num_naive = min(args.naive_classes or len(measured), len(measured))
    subset = [measured[int(i)] for i in np.linspace(0, len(measured) - 1, num_naive).round()]
    subset = sorted(set(subset))
    features_np, labels_np = features_cpu.numpy(), labels_cpu.numpy()
    start = time.perf_counter()
    naive = naive_scales(features_np, labels_np, subset, float(dim))
    naive_subset_time = time.perf_counter() - start
    naive_time = naive_subset_time * len(measured) / len(subset)
    if len(subset) < len(measured):
        print(
            f"naive NumPy loop (CPU, float64 slogdet): {naive_subset_time:.2f} s on {len(subset)} of {len(measured)} "
            f"classes (evenly spaced over the counts), EXTRAPOLATED linearly to {naive_time:.2f} s for all classes"
        )
    else:
        print(f"naive NumPy loop (CPU, float64 slogdet): {naive_time:.2f} s on all {len(measured)} classes")

    rel_exact = float(((ours[measured] - exact[measured]).abs() / exact[measured].abs()).max())
    naive_values = torch.tensor([naive[c] for c in subset], dtype=torch.float64)
    rel_naive = float(((ours[subset] - naive_values).abs() / naive_values.abs()).max())
    rel_ref_naive = float(((exact[subset] - naive_values).abs() / naive_values.abs()).max())
    print(
        f"max relative error: ours vs float64 run {rel_exact:.2e} ({len(measured)} classes); ours vs naive loop "
        f"{rel_naive:.2e} ({len(subset)} classes); float64 run vs naive loop {rel_ref_naive:.2e}"
    )

    extra = _peak_extra_bytes(args, dim, device, features, labels)
    feature_bytes = features.numel() * features.element_size()
    if extra is not None:
        where = "CUDA max_memory_allocated" if device.type == "cuda" else "VmHWM in a fresh subprocess"
        print(
            f"peak extra memory of one call ({where}): {extra / 2**20:.0f} MiB = {extra / feature_bytes:.2f}x features"
        )
    return {
        "shape": f"C={args.classes}, {args.max_count}->{args.min_count}, N={num_samples}, d={dim}",
        "device": str(device),
        "ours": ours_time,
        "naive": naive_time,
        "naive_note": "all" if len(subset) == len(measured) else f"extrap. from {len(subset)}",
        "bound": bound,
        "library_bound": library_bound,
        "per_size_bound": per_size_bound,
        "error": max(rel_exact, rel_naive),
        "memory": None if extra is None else extra / feature_bytes,
    }


def print_table(rows: list[dict]) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(
        "\n| shape | device | ours (s) | naive (s) | speed-up (goal >= 4x) | lower bound (s) "
        "| ours / bound (goal <= 2x) "
        "| library bound (s) | ours / library bound | per-size library bound (s) | ours / per-size library bound "
        "| max rel. error (goal <= 1e-4) | peak extra mem / features (goal < 2x) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        speedup = r["naive"] / r["ours"]
        ratio = r["ours"] / r["bound"]
        memory = "n/a" if r["memory"] is None else f"{r['memory']:.2f}x {verdict(r['memory'] < GOAL_MEMORY_RATIO)}"
        print(
            f"| {r['shape']} | {r['device']} | {r['ours']:.3f} | {r['naive']:.2f} ({r['naive_note']}) "
            f"| {speedup:.1f}x {verdict(speedup >= GOAL_SPEEDUP)} | {r['bound']:.3f} "
            f"| {ratio:.2f}x {verdict(ratio <= GOAL_BOUND_RATIO)} | {r['library_bound']:.3f} "
            f"| {r['ours'] / r['library_bound']:.2f}x | {r['per_size_bound']:.3f} "
            f"| {r['ours'] / r['per_size_bound']:.2f}x | {r['error']:.1e} {verdict(r['error'] <= GOAL_REL_ERROR)} "
            f"| {memory} |"
        )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--max-count", type=int, default=1280)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--dims", type=int, nargs="+", default=[768, 2048])
    parser.add_argument("--quick", action="store_true", help="200 classes, counts 640 -> 5, d 256 and 768")
    parser.add_argument(
        "--naive-classes", type=int, default=None, help="time the naive loop on this many classes and extrapolate"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--_probe-dim", dest="probe_dim", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.classes, args.max_count, args.min_count, args.dims = 200, 640, 5, [256, 768]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.probe_dim is not None:
        _memory_probe(args)
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but torch.cuda.is_available() is False")
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, {_cpu_name()}, {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes compete for the CPUs)"
    )
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    rows = [run_shape(args, dim, device) for dim in args.dims]
    print_table(rows)


if __name__ == "__main__":
    main()
