"""The scripts under `benchmarks/` still run, on tiny shapes (no timing is asserted: their numbers are for the README).

A benchmark that breaks goes unnoticed until the next time someone needs its numbers: `bench_overhead.py` crashed
once `train()` started with a new pool object, which no test ran.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str, cwd: Path) -> str:
    command = [sys.executable, str(BENCHMARKS / script), *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(
    "script, args, expected",
    [
        (
            "bench_overhead.py",
            ["--hidden-size", "16", "--layers", "1", "--heads", "2", "--epochs", "2", "--repeats", "1"]
            + ["--batch-size", "16", "--max-count", "32", "--threads", "1"],
            ["| SemScaleTrainer | 2, 2 |", "of which `FeaturePool.add` | 16 |", "goal <= 5% overhead"],
        ),
        (
            "bench_scales.py",
            ["--classes", "20", "--max-count", "64", "--dims", "32", "--repeats", "1"],
            ["| C=20, 64->5, N=477, d=32 | cpu |", "library bound", "per-size library bound"],
        ),
        ("bench_metric.py", ["--num-samples", "600", "--dim", "8", "--batch-size", "100"], ["add_batch_loop:"]),
        ("bench_pool_memory.py", ["--dims", "16", "--batch-size", "8"], ["| 16 | float32 |"]),
    ],
)
def test_a_benchmark_runs_on_tiny_shapes(tmp_path, script, args, expected):
    extra = ["--output-dir", str(tmp_path)] if script == "bench_overhead.py" else []
    out = _run(script, *args, *extra, cwd=tmp_path)
    for text in expected:
        assert text in out, f"{text!r} not in the output of {script}:\n{out[-3000:]}"


def test_the_per_size_bound_prices_each_order_at_its_own_throughput():
    spec = importlib.util.spec_from_file_location("bench_scales", BENCHMARKS / "bench_scales.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # order 64 factorises at 1 GFLOP/s, order 256 at 4 GFLOP/s; order 128 lies halfway in log-log: 2 GFLOP/s
    seconds = {64: 64**3 / 3 / 1e9, 256: 256**3 / 3 / 4e9}
    counts = np.array([1, 100, 128, 300])  # 1: not measured; 300 > d: order d = 256
    got = bench.per_size_cholesky_seconds(counts, 256, seconds)
    want = 100**3 / 3 / (1e9 * (100 / 64) ** 1.0) + 128**3 / 3 / 2e9 + 256**3 / 3 / 4e9
    assert got == pytest.approx(want, rel=1e-12)
    # outside the measured orders the nearest measured throughput is used
    assert bench.per_size_cholesky_seconds(np.array([32]), 256, seconds) == pytest.approx(32**3 / 3 / 1e9)
