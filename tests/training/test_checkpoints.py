"""Completeness checks of checkpoint folders, and the staged publication of a checkpoint (no trainer needed)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from semscale_hf.training import checkpoints
from semscale_hf.training.checkpoints import STAGING_DIR, checkpoint_problems, publish, remove_stale_staging


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


class Killed(BaseException):
    """Stands for the process dying at this point (nothing after it runs)."""


def _kill_at_call(monkeypatch, module, name, call):
    original, calls = getattr(module, name), []

    def dying(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise Killed
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, dying)


def _saved_twice(tmp_path):
    """checkpoint-4 in place (the run before a resume) and a new complete save of step 4 in the staging folder."""
    run = tmp_path / "run"
    _complete(run / "checkpoint-4")
    (run / "checkpoint-4" / "old").touch()
    staged = _complete(run / STAGING_DIR / "checkpoint-4")
    (staged / "new").touch()
    return run, staged


@pytest.mark.parametrize(
    "killed_at",
    [
        ("os", "replace", 1),  # while the new copy is marked complete (`.ready`)
        ("os", "replace", 2),  # marked, while the old copy is moved aside
        ("os", "replace", 3),  # the old copy aside, the new one not yet in place
        ("shutil", "rmtree", 1),  # the new copy in place, the old one not yet deleted
    ],
)
def test_a_kill_while_a_checkpoint_is_replaced_keeps_a_complete_copy(tmp_path, monkeypatch, killed_at):
    run, staged = _saved_twice(tmp_path)
    module, name, call = killed_at
    _kill_at_call(monkeypatch, {"os": checkpoints.os, "shutil": checkpoints.shutil}[module], name, call)
    with pytest.raises(Killed):
        publish(str(staged), str(run / "checkpoint-4"))
    monkeypatch.undo()
    remove_stale_staging(str(run))  # what the next train() does first
    assert checkpoint_problems(str(run / "checkpoint-4")) == [] and not (run / STAGING_DIR).exists()
    # the new copy once the old one was moved aside, else the old one (a complete checkpoint stays where it is)
    moved_aside = killed_at in {("os", "replace", 3), ("shutil", "rmtree", 1)}
    assert (run / "checkpoint-4" / ("new" if moved_aside else "old")).exists()


def test_publish_replaces_a_checkpoint_of_the_same_step(tmp_path):
    run, staged = _saved_twice(tmp_path)
    publish(str(staged), str(run / "checkpoint-4"))
    assert (run / "checkpoint-4" / "new").exists() and not (run / "checkpoint-4" / "old").exists()
    assert not (run / STAGING_DIR).exists()


def test_stale_staging_restores_checkpoints_marked_complete_and_removes_the_rest(tmp_path):
    run = tmp_path / "run"
    staging = run / STAGING_DIR
    _complete(staging / "checkpoint-6.ready")  # killed after the save of step 6 was marked complete, before its rename
    # killed while the save of step 8 was written: its files may look complete on this process while another
    # process's (its rng_state_1.pth) were never written, so only the `.ready` mark counts
    _complete(staging / "checkpoint-8")
    _complete(staging / "checkpoint-10")
    (staging / "checkpoint-10" / "optimizer.pt").unlink()
    restored, removed = remove_stale_staging(str(run))
    assert restored == [str(run / "checkpoint-6")]
    assert removed == [str(staging / "checkpoint-10"), str(staging / "checkpoint-8")]
    assert checkpoint_problems(str(run / "checkpoint-6")) == [] and not staging.exists()
    assert not (run / "checkpoint-8").exists() and not (run / "checkpoint-10").exists()


def test_a_marked_copy_replaces_an_incomplete_checkpoint_of_its_step(tmp_path):
    run = tmp_path / "run"
    _complete(run / "checkpoint-4")
    (run / "checkpoint-4" / "optimizer.pt").write_bytes(b"PK")  # e.g. written by a plain Trainer killed mid-save
    (run / "checkpoint-4" / "model.safetensors").write_bytes(b"")
    (_complete(run / STAGING_DIR / "checkpoint-4.ready") / "new").touch()
    restored, _ = remove_stale_staging(str(run))
    assert restored == [str(run / "checkpoint-4")] and (run / "checkpoint-4" / "new").exists()
    assert checkpoint_problems(str(run / "checkpoint-4")) == []


def test_publish_replaces_a_marked_copy_left_by_a_killed_run(tmp_path):
    # a hyperparameter search writes into run-N folders, whose staging folder no train() cleans up
    run, staged = _saved_twice(tmp_path)
    (_complete(run / STAGING_DIR / "checkpoint-4.ready") / "stale").touch()
    publish(str(staged), str(run / "checkpoint-4"))
    assert (run / "checkpoint-4" / "new").exists() and not (run / "checkpoint-4" / "stale").exists()
    assert not (run / STAGING_DIR).exists()
