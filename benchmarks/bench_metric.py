"""Time the `semantic_scale` evaluate module against the plain function on tensors (the fast path).

Usage:

    python benchmarks/bench_metric.py                 # 50,000 x 768 float32 embeddings, 10 classes
    python benchmarks/bench_metric.py --quick         # 5,000 x 128, a smoke run
    python benchmarks/bench_metric.py --num-samples 20000 --dim 512 --num-classes 100 --repeats 3

Each path reports the best of `--repeats` wall-clock runs (seconds). Paths:

* `function`: `semantic_scale_metric(tensor, tensor, tensor)`, no evaluate machinery;
* `compute_one_shot`: `metric.compute(embeddings=ndarray, labels=..., predictions=...)`;
* `add_batch_loop`: `metric.add_batch(...)` per batch of tensors (as in an evaluation loop), then `metric.compute()`;
* `float_lists_arrow` (with `--float-lists`): only the Arrow round trip of the same data stored as lists of float32
  (`Sequence(Value("float32"))`, the usual schema for vectors), written and read back as Python lists; the module
  stores each embedding as one bytes value instead, and this path shows what that saves.

The evaluate paths store to an Arrow cache in a temporary directory, as they do by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="5,000 x 128 embeddings")
    parser.add_argument("--float-lists", action="store_true", help="also time the float-list Arrow round trip")
    args = parser.parse_args()
    if args.quick:
        args.num_samples, args.dim = 5_000, 128

    with tempfile.TemporaryDirectory() as cache:
        # evaluate reads these at import: keep the benchmark out of the user's cache and off the network
        os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
        os.environ["HF_MODULES_CACHE"] = os.path.join(cache, "modules")
        import datasets
        import evaluate
        import numpy as np
        import torch

        from semscale_hf.metrics import semantic_scale_metric
        from semscale_hf.metrics.loading import load_metric

        generator = torch.Generator().manual_seed(0)
        labels = torch.randint(0, args.num_classes, (args.num_samples,), generator=generator)
        centres = torch.randn(args.num_classes, args.dim, generator=generator) * 2
        embeddings = centres[labels] + torch.randn(args.num_samples, args.dim, generator=generator)
        predictions = torch.where(torch.rand(args.num_samples, generator=generator) < 0.8, labels, 0)
        embeddings_np, labels_np, predictions_np = embeddings.numpy(), labels.numpy(), predictions.numpy()
        metric = load_metric(cache_dir=os.path.join(cache, "data"))
        batches = range(0, args.num_samples, args.batch_size)

        def function():
            return semantic_scale_metric(embeddings, labels, predictions)

        def compute_one_shot():
            return metric.compute(embeddings=embeddings_np, labels=labels_np, predictions=predictions_np)

        def add_batch_loop():
            for start in batches:
                stop = start + args.batch_size
                metric.add_batch(
                    embeddings=embeddings[start:stop], labels=labels[start:stop], predictions=predictions[start:stop]
                )
            return metric.compute()

        def float_lists_arrow():
            features = datasets.Features(
                {"embeddings": datasets.Sequence(datasets.Value("float32")), "labels": datasets.Value("int64")}
            )
            table = datasets.Dataset.from_dict(
                {"embeddings": embeddings_np.tolist(), "labels": labels_np.tolist()}, features=features
            )
            rows = table["embeddings"][:]
            return semantic_scale_metric(np.asarray(rows, dtype=np.float32), table["labels"][:], predictions_np)

        paths = [function, compute_one_shot, add_batch_loop] + ([float_lists_arrow] if args.float_lists else [])
        reference = function()
        timings = {}
        for path in paths:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = path()
                best = min(best, time.perf_counter() - start)
            np.testing.assert_allclose(result["semantic_scales"], reference["semantic_scales"], rtol=1e-9)
            timings[path.__name__] = round(best, 3)
            print(f"{path.__name__:>20}: {best:8.3f} s", flush=True)

    print(
        json.dumps(
            {
                "num_samples": args.num_samples,
                "dim": args.dim,
                "num_classes": args.num_classes,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "evaluate": evaluate.__version__,
                "seconds": timings,
            }
        )
    )


if __name__ == "__main__":
    main()
