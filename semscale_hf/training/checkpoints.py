"""Crash-safe checkpoints: staged in a private folder and renamed into place when complete; completeness checks.

`SemScaleTrainer` lets `Trainer` write every checkpoint into `<output_dir>/_semscale-staging/checkpoint-N`; once every
process has written its files, the folder is renamed `checkpoint-N.ready` and then `<output_dir>/checkpoint-N` (each
an `os.replace`, atomic on one filesystem). A process killed during a save therefore leaves the previous checkpoints
and, at most, a staging folder that the next `train()` cleans up: a `.ready` checkpoint whose `checkpoint-N` is
missing (or incomplete) is put in place, the rest is deleted.
Checkpoints written by other code (a plain `Trainer`, an older version) can still be incomplete:
[`checkpoint_problems`] says what such a folder lacks, and [`newest_complete_checkpoint`] skips it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


__all__ = [
    "STAGING_DIR",
    "checkpoint_problems",
    "newest_complete_checkpoint",
    "publish",
    "remove_stale_staging",
    "weight_map",
]

STAGING_DIR = "_semscale-staging"
"""Folder of `output_dir` that holds a checkpoint while it is written. Its leading `_` keeps it out of every Hub
upload of `output_dir`: Trainer's uploads skip `_*` (a push running during a save uploaded the half-written
checkpoint of a `.semscale-staging` folder)."""

_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")
_SAFETENSORS = ("semscale_state.safetensors", "semscale_pool.safetensors")
_READY = ".ready"  # suffix of a staged checkpoint that every process has finished writing
_REPLACED = ".replaced"  # suffix of a checkpoint that `publish` moved aside into the staging folder
_RNG_STATE = re.compile(r"^rng_state(_\d+)?\.pth$")


def checkpoint_problems(folder: str, *, save_only_model: bool = False) -> list[str]:
    """What keeps `folder` from being a complete checkpoint (empty list: complete), e.g. `"optimizer.pt is missing"`.

    Checked, without loading any tensor (headers and archive directories only): `trainer_state.json` is valid JSON
    (and `config.json` when present); a weights file is there and readable: a safetensors header that covers the whole
    file, every shard that `model.safetensors.index.json` lists, `pytorch_model.bin` a complete zip archive; without
    `save_only_model`, `optimizer.pt` and `scheduler.pt` are complete zip archives (torch.save's format), as are
    `scaler.pt` and `rng_state*.pth` when present; semscale's safetensors files, when present, have a readable header.
    """
    problems = []

    def json_problem(name: str) -> str | None:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        try:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, ValueError):
            return f"{name} is empty or not valid JSON"
        return None

    if problem := json_problem("trainer_state.json"):
        problems.append(problem)
    if os.path.isfile(os.path.join(folder, "config.json")) and (problem := json_problem("config.json")):
        problems.append(problem)
    weights = [name for name in _WEIGHTS if os.path.isfile(os.path.join(folder, name))]
    if not weights:
        problems.append(f"no model weights ({', '.join(_WEIGHTS[:1] + _WEIGHTS[2:3])}, ...)")
    for name in weights:
        problems += _weights_problems(folder, name)
    torch_files = []
    if not save_only_model:  # the scaler and RNG states are optional: the resume reads them when they are there
        optional = sorted(name for name in os.listdir(folder) if name == "scaler.pt" or _RNG_STATE.match(name))
        torch_files = ["optimizer.pt", "scheduler.pt", *optional]
    for name in torch_files:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            problems.append(f"{name} is missing")
        elif not zipfile.is_zipfile(path):  # a truncated archive lacks its directory, which comes last
            problems.append(f"{name} is truncated or not a torch.save file")
    for name in _SAFETENSORS:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not _readable_safetensors(path):
            problems.append(f"{name} cannot be read")
    return problems


def _weights_problems(folder: str, name: str) -> list[str]:
    path = os.path.join(folder, name)
    if name.endswith(".safetensors"):
        return [] if _readable_safetensors(path) else [f"{name} is truncated or not a safetensors file"]
    if name.endswith(".bin"):
        return [] if zipfile.is_zipfile(path) else [f"{name} is truncated or not a torch.save file"]
    try:  # the index of a sharded save: every shard it lists must be there and readable
        shards = sorted(set(weight_map(path).values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [f"{name} is empty or not a valid index (no weight_map)"]
    problems = []
    for shard in shards:
        shard_path = os.path.join(folder, shard)
        if not os.path.isfile(shard_path):
            problems.append(f"{shard} (listed in {name}) is missing")
        elif not _readable_safetensors(shard_path):
            problems.append(f"{shard} (listed in {name}) is truncated or not a safetensors file")
    return problems


def weight_map(index_path: str) -> dict[str, str]:
    """The `weight_map` (weight name -> shard file) of a sharded save's `model.safetensors.index.json`."""
    with open(index_path, encoding="utf-8") as handle:
        return dict(json.load(handle)["weight_map"])


def newest_complete_checkpoint(output_dir: str, *, save_only_model: bool = False) -> tuple[str | None, dict]:
    """The newest complete `checkpoint-N` of `output_dir` (or `None`), and the newer incomplete ones it skipped."""
    if not os.path.isdir(output_dir):
        return None, {}
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := _CHECKPOINT.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    skipped = {}
    for _, name in reversed(steps):
        folder = os.path.join(output_dir, name)
        problems = checkpoint_problems(folder, save_only_model=save_only_model)
        if not problems:
            return folder, skipped
        skipped[folder] = problems
    return None, skipped


def publish(staged: str, final: str) -> None:
    """Moves a checkpoint folder that every process has finished writing into place.

    It is first marked complete (renamed `<name>.ready`: only such folders are ever restored, since a kill can land
    before the other processes' files are in). A folder already at `final` (the same step, saved again after a
    resume) is then moved aside into the staging folder and deleted only after the new one is in place, so at every
    moment a complete copy is at `final` or waits in the staging folder, where [`remove_stale_staging`] puts it back.
    """
    staging = os.path.dirname(staged)
    ready = staged + _READY
    if os.path.isdir(ready):  # left by a killed run that nothing cleaned up since (a folder outside any train())
        shutil.rmtree(ready)
    os.replace(staged, ready)
    if os.path.isdir(final):
        aside = os.path.join(staging, os.path.basename(final) + _REPLACED)
        if os.path.isdir(aside):  # left by a kill after an earlier replacement of this step
            shutil.rmtree(aside)
        os.replace(final, aside)
        os.replace(ready, final)
        shutil.rmtree(aside)
    else:
        os.replace(ready, final)
    if os.path.isdir(staging) and not os.listdir(staging):
        os.rmdir(staging)


def remove_stale_staging(output_dir: str) -> tuple[list[str], list[str]]:
    """Cleans up the staging folder that a process killed during a save left; returns `(restored, removed)`.

    A checkpoint marked complete (`.ready`, or an old copy that `publish` moved aside) whose `checkpoint-N` is
    missing or incomplete is moved into place, not deleted (a kill between `publish`'s renames): `restored` lists
    the folders put back. Everything else there is deleted; `removed` lists the checkpoints whose writing was cut
    short. A restored checkpoint was not rotated: the next save applies `save_total_limit`.
    """
    staging = os.path.join(output_dir, STAGING_DIR)
    if not os.path.isdir(staging):
        return [], []
    restored, removed = [], []
    # sorted: a step's `.ready` copy comes before the older copy of that step that publish moved aside
    for name in sorted(os.listdir(staging)):
        step_name = name.removesuffix(_READY).removesuffix(_REPLACED)
        if not _CHECKPOINT.match(step_name):
            continue
        folder, final = os.path.join(staging, name), os.path.join(output_dir, step_name)
        if name == step_name:
            removed.append(folder)  # cut short while some process was still writing it
            continue
        # complete by construction; the lenient check only guards against a damaged disk
        if checkpoint_problems(folder, save_only_model=True):
            continue
        if os.path.isdir(final) and checkpoint_problems(final, save_only_model=True):
            shutil.rmtree(final)  # incomplete: the marked copy replaces it (a kill here leaves that copy to restore)
        if not os.path.exists(final):
            os.replace(folder, final)
            restored.append(final)
    shutil.rmtree(staging, ignore_errors=True)
    return restored, removed


def _readable_safetensors(path: str) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            handle.metadata()
    except Exception:  # a truncated or empty file: safetensors raises its own error type
        return False
    return True
