"""Memory of the feature pool at the ImageNet-LT shape (115,846 features), per storage dtype and dimension.

    python benchmarks/bench_pool_memory.py                    # CPU: the storage's bytes
    python benchmarks/bench_pool_memory.py --device cuda      # GPU: peak allocated memory while filling it

The pool holds one row per training sample (capacity = the class's count), so its size is the dataset's size times
the feature dimension times the dtype's bytes; on a GPU the peak also holds one batch's temporaries.
"""

from __future__ import annotations

import argparse
import math

import torch

from semscale_hf.core.pool import FeaturePool


TOTAL = 115_846  # ImageNet-LT's training split


def imagenet_lt_counts() -> list[int]:
    """1,000 classes from 1,280 samples down to 5, decaying exponentially at the rate that gives ImageNet-LT's total
    (its real profile is a Pareto one; only the total sets the pool's memory)."""
    low, high = 0.0, 1.0
    for _ in range(60):  # bisection on the decay rate
        rate = (low + high) / 2
        counts = [max(5, round(1280 * math.exp(-rate * c))) for c in range(1000)]
        low, high = (rate, high) if sum(counts) > TOTAL else (low, rate)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dims", type=int, nargs="+", default=[768, 2048])
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    counts = imagenet_lt_counts()
    print(f"# pool memory, {sum(counts):,} features in {len(counts)} classes, device {device}\n")
    print("| dim | dtype | storage (GiB) | peak while filling (GiB) |")
    print("|---:|---|---:|---:|")
    for dim in args.dims:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                start = torch.cuda.memory_allocated(device)
            pool = FeaturePool(counts, dim=dim, dtype=dtype, device=device)
            labels = torch.arange(args.batch_size, device=device) % len(counts)
            features = torch.randn(args.batch_size, dim, device=device)
            for _ in range(3):
                pool.add(features, labels, validate=False)
            peak = "-"
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                peak = f"{(torch.cuda.max_memory_allocated(device) - start) / 2**30:.3f}"
            print(f"| {dim} | {str(dtype).removeprefix('torch.')} | {pool.nbytes / 2**30:.3f} | {peak} |")
            del pool, features


if __name__ == "__main__":
    main()
