"""Completeness checks of checkpoint folders, and the staged publication of a checkpoint (no trainer needed)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from semscale_hf.training.checkpoints import checkpoint_problems


def _complete(folder, *, sharded=False):
    """A checkpoint folder as `Trainer` writes it (small tensors; the files' formats are what matters)."""
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (folder / "config.json").write_text("{}")
    tensors = {"a": torch.randn(64, 64), "b": torch.randn(64)}
    if sharded:
        save_file({"a": tensors["a"]}, str(folder / "model-00001-of-00002.safetensors"))
        save_file({"b": tensors["b"]}, str(folder / "model-00002-of-00002.safetensors"))
        weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    else:
        save_file(tensors, str(folder / "model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.randn(64, 64)}}}, folder / "optimizer.pt")
    torch.save({"last_epoch": 4}, folder / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    save_file({"class_weights": torch.ones(4, dtype=torch.float64)}, str(folder / "semscale_state.safetensors"))
    return folder


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_complete_checkpoint_has_no_problems(tmp_path):
    assert checkpoint_problems(str(_complete(tmp_path / "plain"))) == []
    assert checkpoint_problems(str(_complete(tmp_path / "sharded", sharded=True))) == []


def test_half_written_weights_and_optimizer_are_found(tmp_path):
    # a save killed by other code: every file there and not empty, but cut off halfway
    folder = _complete(tmp_path / "checkpoint-4")
    _truncate(folder / "model.safetensors")
    _truncate(folder / "optimizer.pt")
    assert checkpoint_problems(str(folder)) == [
        "model.safetensors is truncated or not a safetensors file",
        "optimizer.pt is truncated or not a torch.save file",
    ]
    # a model-only checkpoint needs no optimizer, but its weights must still be whole
    assert checkpoint_problems(str(folder), save_only_model=True) == [
        "model.safetensors is truncated or not a safetensors file"
    ]


@pytest.mark.parametrize("name", ["scheduler.pt", "rng_state.pth", "semscale_state.safetensors"])
def test_other_truncated_files_are_found(tmp_path, name):
    folder = _complete(tmp_path / "checkpoint-4")
    _truncate(folder / name)
    assert len(problems := checkpoint_problems(str(folder))) == 1 and problems[0].startswith(name)


def test_shards_of_a_sharded_checkpoint_are_checked(tmp_path):
    folder = _complete(tmp_path / "checkpoint-4", sharded=True)
    _truncate(folder / "model-00001-of-00002.safetensors")
    (folder / "model-00002-of-00002.safetensors").unlink()
    index = "model.safetensors.index.json"
    assert checkpoint_problems(str(folder)) == [
        f"model-00001-of-00002.safetensors (listed in {index}) is truncated or not a safetensors file",
        f"model-00002-of-00002.safetensors (listed in {index}) is missing",
    ]
    _truncate(folder / index)
    assert checkpoint_problems(str(folder)) == [f"{index} is empty or not a valid index (no weight_map)"]


def test_a_truncated_pytorch_model_bin_is_found(tmp_path):
    folder = _complete(tmp_path / "checkpoint-4")
    (folder / "model.safetensors").unlink()
    torch.save({"a": torch.randn(64, 64)}, folder / "pytorch_model.bin")
    assert checkpoint_problems(str(folder)) == []
    _truncate(folder / "pytorch_model.bin")
    assert checkpoint_problems(str(folder)) == ["pytorch_model.bin is truncated or not a torch.save file"]
