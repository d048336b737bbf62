"""2 CPU processes (gloo, launched with torchrun) give the same scales and weights as 1 process."""

import json
import os
import subprocess
import sys

import pytest


SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_helpers", "distributed_train.py")


def _run(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _run_one_and_two(tmp_path, mode):
    """Runs the script with 1 process (batch 4) and 2 (batch 2 each); returns both states."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    _run([sys.executable, SCRIPT, str(one), "4", mode], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, SCRIPT, str(two), "2", mode], tmp_path)
    return json.loads(one.read_text()), json.loads(two.read_text())


def _one_and_two_processes(tmp_path, mode):
    """Runs both, checks what both modes share, returns both."""
    single, double = _run_one_and_two(tmp_path, mode)
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert double["identical_across_ranks"]
    assert double["pool_counts"] == single["pool_counts"] == [16, 10, 6, 4]
    assert double["refreshes"] == single["refreshes"] >= 3
    assert double["semantic_scales"] == pytest.approx(single["semantic_scales"], rel=1e-4)
    assert double["losses"] == pytest.approx(single["losses"], rel=1e-4)
    return single, double


@pytest.mark.distributed
def test_two_processes_equal_one_process(tmp_path):
    single, double = _one_and_two_processes(tmp_path, "trainer")
    assert double["class_weights"] == pytest.approx(single["class_weights"], rel=1e-4)
    assert double["class_weights"] != pytest.approx([1.0] * 4)
    assert double["classifier"] == pytest.approx(single["classifier"], rel=1e-3, abs=1e-5)


@pytest.mark.distributed
def test_measure_only_callback_two_processes_equal_one_process(tmp_path):
    # a plain Trainer: every rank pools its own batches, gathered at each step's end
    _one_and_two_processes(tmp_path, "callback")


@pytest.mark.distributed
@pytest.mark.parametrize("mode", ["trainer", "callback"])
def test_even_batches_repeats_stay_out_of_the_pool(tmp_path, mode):
    # 39 samples, global micro-batch 4, 2 accumulation steps: the epoch's last micro-batch holds 3 real samples, and
    # with 2 processes accelerate repeats a sample to fill it; Trainer fetches the whole last window (2 micro-batches)
    # ahead, so only the second of them may lose its repeated sample
    output = tmp_path / "two.json"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, SCRIPT, str(output), "2", f"{mode}-uneven"], tmp_path)
    state = json.loads(output.read_text())
    assert state["world_size"] == 2 and state["identical_across_ranks"]
    assert state["num_seen"] == [2 * count for count in [16, 10, 6, 7]]  # 2 epochs, every sample once per epoch


@pytest.mark.distributed
@pytest.mark.parametrize("mode", ["trainer-token", "callback-token", "trainer-multilabel"])
def test_token_and_multi_label_tasks_two_processes_equal_one_process(tmp_path, mode):
    # token: sentences of 5 to 10 tokens, each rank's batch padded to its own longest, the gather pads across ranks;
    # multi-label: float multi-hot labels gathered and expanded to one pool row per positive class
    single, double = _run_one_and_two(tmp_path, mode)
    assert double["world_size"] == 2 and double["identical_across_ranks"]
    assert double["pool_counts"] == single["pool_counts"] and sum(single["pool_counts"]) > 36
    assert double["refreshes"] == single["refreshes"] >= 3
    if mode == "callback-token":
        # a plain Trainer's BERT loss is a mean over each rank's own tokens, so 2 ranks train (slightly) differently
        # from 1: the pooled tokens agree, the features need not
        return
    assert double["semantic_scales"] == pytest.approx(single["semantic_scales"], rel=1e-4)
    assert double["class_weights"] == pytest.approx(single["class_weights"], rel=1e-4)
    assert double["losses"] == pytest.approx(single["losses"], rel=1e-4)
    assert double["classifier"] == pytest.approx(single["classifier"], rel=1e-3, abs=1e-5)


@pytest.mark.distributed
def test_every_rank_loads_the_best_checkpoint_at_the_end(tmp_path):
    # Trainer names the best checkpoint by the folder it saved into, the staging one: every rank (not only the one
    # that publishes the checkpoint) must take the final path, or the others keep the last step's weights
    output = tmp_path / "two.json"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, SCRIPT, str(output), "2", "trainer-best"], tmp_path)
    state = json.loads(output.read_text())
    assert state["world_size"] == 2 and state["best_found_on_ranks"] == [1.0, 1.0]
    assert state["identical_across_ranks"]  # classifier weights included
