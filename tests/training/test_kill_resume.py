"""Fault injection: a training process dies inside a checkpoint save; `resume_from_checkpoint=True` still reaches the
target step and ends with the weights of an uninterrupted run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from semscale_hf.training.checkpoints import STAGING_DIR


SCRIPT = Path(__file__).resolve().parents[1] / "_helpers" / "kill_train.py"


def _run(output_dir, mode):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(output_dir), mode], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output = tmp_path_factory.mktemp("full") / "run"
    result = _run(output, "full")
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads(Path(f"{output}.json").read_text()), "weights": load_file(f"{output}.safetensors")}


@pytest.mark.parametrize("point", ["model", "optimizer", "semscale", "trainer_state"])
def test_a_kill_during_a_save_loses_nothing(tmp_path, uninterrupted, point):
    output = tmp_path / "run"
    killed = _run(output, f"kill:{point}")
    assert killed.returncode == 1, killed.stderr[-3000:]
    # the second save (step 4) died half-written: only its staging folder exists, checkpoint-2 is complete
    assert (output / "checkpoint-2").is_dir() and not (output / "checkpoint-4").exists()
    assert (output / STAGING_DIR / "checkpoint-4").is_dir()
    resumed = _run(output, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "removed" in resumed.stderr and STAGING_DIR in resumed.stderr
    result = json.loads(Path(f"{output}.json").read_text())
    # training is deterministic: a run that silently started again from step 0 would end with the same weights
    assert uninterrupted["start_step"] == 0 and result["start_step"] == 2
    assert result["global_step"] == uninterrupted["global_step"] == 8
    weights = load_file(f"{output}.safetensors")
    assert weights.keys() == uninterrupted["weights"].keys()
    for name, value in weights.items():
        torch.testing.assert_close(value, uninterrupted["weights"][name], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.tensor(result["class_weights"]), torch.tensor(uninterrupted["class_weights"]),
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    assert not (output / STAGING_DIR).exists()
