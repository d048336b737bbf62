"""The scripts under `benchmarks/` still run, on tiny shapes (no timing is asserted: their numbers are for the README).

A benchmark that breaks goes unnoticed until the next time someone needs its numbers: `bench_overhead.py` crashed
once `train()` started with a new pool object, which no test ran.
"""

import subprocess
import sys
from pathlib import Path

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
            ["| C=20, 64->5, N=477, d=32 | cpu |", "library bound"],
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
