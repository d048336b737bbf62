"""End to end: `SemScaleTrainer(push_to_hub=True)` against the local Hub test double (`tests/hub_server.py`).

The trainer runs in this process, pointed at the server by the `hub_server_in_process` fixture; the checks read the
repo back through `huggingface_hub` (snapshot download, `ModelCard.load`) and `from_pretrained`.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
import torch
from _helpers import hub_fixtures
from _helpers.trainer_utils import digits_dataset, make_args, tiny_vit
from huggingface_hub import ModelCard, snapshot_download
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, TrainerCallback

from semscale_hf import HubPushError, SemScaleTrainer
from semscale_hf.core.balancer import POOL_FILE, STATE_FILE
from semscale_hf.hub import PLOT_FILE


hub_server = hub_fixtures.hub_server
hub_server_in_process = hub_fixtures.hub_server_in_process

REPO = "test-user/semscale-tiny"
COUNTS = [12, 6, 4, 2]  # 24 samples, batch 4: 6 steps per epoch
MODEL_FILES = {"config.json", "model.safetensors", STATE_FILE, "README.md", PLOT_FILE, "training_args.bin"}


def _trainer(output_dir: Path, **overrides) -> SemScaleTrainer:
    data = digits_dataset(counts=COUNTS)
    options = {
        "max_steps": 6,
        "save_strategy": "steps",
        "save_steps": 3,
        "eval_strategy": "steps",
        "eval_steps": 6,
        "push_to_hub": True,
        "hub_model_id": "semscale-tiny",
        "hub_always_push": True,  # never skip a push because the previous one still runs: deterministic commits
    }
    options.update(overrides)
    args = make_args(output_dir, **options)
    return SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data, eval_dataset=data)


def _assert_same_weights(model: torch.nn.Module, repo_or_path: str | Path) -> None:
    loaded = AutoModelForImageClassification.from_pretrained(repo_or_path)
    expected, actual = model.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


SAVES = ["Training in progress, step 3", "Training in progress, step 6"]


@pytest.mark.parametrize(
    ("strategy", "lfs", "in_training", "checkpoint_folders"),
    [
        ("end", False, [], set()),
        ("every_save", True, SAVES, set()),
        ("checkpoint", False, [m for s in SAVES for m in (s, s + ", checkpoint")], {"last-checkpoint"}),
        (
            "all_checkpoints",
            True,
            [m for s in SAVES for m in (s, s + ", checkpoint")],
            {"checkpoint-3", "checkpoint-6"},
        ),
    ],
)
def test_push_with_every_hub_strategy(hub_server_in_process, tmp_path, strategy, lfs, in_training, checkpoint_folders):
    server = hub_server_in_process
    if lfs:
        server.lfs_threshold = 1_000  # model weights and the plot go through Git LFS, the small files inline
    trainer = _trainer(tmp_path / "out", hub_strategy=strategy)
    trainer.train()
    assert server.commit_messages(REPO) == ["initial commit", *in_training]
    if in_training:  # Trainer alone pushes only the model files during training
        assert {"model.safetensors", STATE_FILE, "README.md", PLOT_FILE} <= set(server.list_files(REPO))
    trainer.push_to_hub(dataset="digits-lt")
    assert server.commit_messages(REPO) == ["initial commit", *in_training, "End of training"]
    assert trainer.hub_push_failures == []

    files = set(server.list_files(REPO))
    assert MODEL_FILES <= files
    assert {path.split("/")[0] for path in files if "/" in path} == checkpoint_folders
    for folder in checkpoint_folders:
        assert {f"{folder}/{POOL_FILE}", f"{folder}/{STATE_FILE}", f"{folder}/model.safetensors"} <= files
    assert server.file(REPO, "model.safetensors").lfs is lfs
    assert server.file(REPO, PLOT_FILE).lfs is lfs
    assert not server.file(REPO, "config.json").lfs and not server.file(REPO, STATE_FILE).lfs

    local = Path(snapshot_download(REPO))
    state = load_file(local / STATE_FILE)
    torch.testing.assert_close(state["class_weights"], trainer.class_weights)
    torch.testing.assert_close(state["semantic_scales"], trainer.semantic_scales, equal_nan=True)
    assert state["class_counts"].tolist() == COUNTS
    assert (local / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _assert_same_weights(trainer.model, REPO)

    card = ModelCard.load(REPO)
    assert {"semscale", "long-tailed", "image-classification"} <= set(card.data.tags)
    assert card.data.datasets == ["digits-lt"] and card.data.pipeline_tag == "image-classification"
    accuracy = next(r for r in card.data.eval_results if r.metric_name == "Accuracy")
    last_eval = [e for e in trainer.state.log_history if "eval_accuracy" in e][-1]
    assert accuracy.metric_value == pytest.approx(last_eval["eval_accuracy"], abs=1e-4)
    assert f"![Semantic scale vs per-class accuracy]({PLOT_FILE})" in card.text


class _BreakTheHub(TrainerCallback):
    """Makes the server answer every request with an error from step `step` on."""

    def __init__(self, server, step: int, trainer) -> None:
        self.server, self.step, self.trainer = server, step, trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            # the earlier pushes run in background threads: let them finish, or the count of failures is a race
            if self.trainer.push_in_progress is not None:
                self.trainer.push_in_progress.wait_until_done()
            self.server.fail_status = 507  # not retried by huggingface_hub: fails at once
            self.server.fail_mode = True


def test_hub_failure_during_training_loses_nothing(hub_server_in_process, tmp_path, caplog):
    server = hub_server_in_process
    output_dir = tmp_path / "out"
    trainer = _trainer(output_dir, hub_strategy="checkpoint", max_steps=9)
    trainer.add_callback(
        _BreakTheHub(server, step=4, trainer=trainer)
    )  # after the push at step 3, before the saves at 6 and 9
    with caplog.at_level(logging.WARNING, logger="semscale_hf.training.hub_push"):
        trainer.train()

    assert trainer.state.global_step == 9  # training went on to the end
    # the model folder and last-checkpoint/, at steps 6 and 9
    assert len(trainer.hub_push_failures) == 4
    assert all("HfHubHTTPError" in failure and "507" in failure for failure in trainer.hub_push_failures)
    assert sorted(failure.split(":")[0] for failure in trainer.hub_push_failures) == ["step 6"] * 2 + ["step 9"] * 2
    assert "pushing to the Hub repo 'test-user/semscale-tiny' failed at step 6" in caplog.text
    assert "pushing to the Hub repo 'test-user/semscale-tiny' failed at step 9" in caplog.text
    for step in (3, 6, 9):
        checkpoint = output_dir / f"checkpoint-{step}"
        assert {"model.safetensors", "config.json", STATE_FILE, POOL_FILE, "trainer_state.json"} <= {
            p.name for p in checkpoint.iterdir()
        }
    assert server.commit_messages(REPO)[-1] == "Training in progress, step 3, checkpoint"

    with pytest.raises(HubPushError, match="The folder is complete on disk"):
        trainer.push_to_hub(dataset="digits-lt")
    assert MODEL_FILES <= {p.name for p in output_dir.iterdir()}
    _assert_same_weights(trainer.model, output_dir)
    torch.testing.assert_close(load_file(output_dir / STATE_FILE)["class_weights"], trainer.class_weights)

    # the Hub is back: the same call uploads the complete folder
    server.fail_mode = False
    trainer.push_to_hub(dataset="digits-lt")
    assert server.commit_messages(REPO)[-1] == "End of training"
    assert MODEL_FILES <= set(server.list_files(REPO))
    _assert_same_weights(trainer.model, REPO)


def test_unreachable_hub_fails_in_the_constructor(hub_server_in_process, tmp_path):
    hub_server_in_process.fail_mode = True
    with pytest.raises(HubPushError, match="could not create or reach the Hub repo 'semscale-tiny'") as error:
        _trainer(tmp_path / "out")
    assert "train with push_to_hub=False and call trainer.push_to_hub() afterwards" in str(error.value)


def test_push_to_hub_without_push_to_hub_argument_saves_locally_when_the_hub_is_down(hub_server_in_process, tmp_path):
    output_dir = tmp_path / "out"
    trainer = _trainer(output_dir, push_to_hub=False, save_strategy="no", eval_strategy="no", max_steps=2)
    trainer.train()
    hub_server_in_process.stop()
    # after training only a retry helps: the advice to train with push_to_hub=False was for the constructor
    with pytest.raises(HubPushError, match="could not create or reach") as error:
        trainer.push_to_hub()
    assert "call trainer.push_to_hub() again" in str(error.value) and "train with" not in str(error.value)
    # no evaluation, so no plot (the card says why)
    assert {"config.json", "model.safetensors", STATE_FILE, "README.md"} <= {p.name for p in output_dir.iterdir()}

    hub_server_in_process.start()
    trainer.push_to_hub()
    assert hub_server_in_process.commit_messages(REPO) == ["initial commit", "End of training"]
    _assert_same_weights(trainer.model, REPO)


class _SlowHub(TrainerCallback):
    """Holds every commit from the start; lets them through at the end of step `release_step` (or when training ends).

    At the next step's start it waits until the pushes then running have finished, so what is pushed when is
    deterministic.
    """

    def __init__(self, server, trainer, release_step: int | None) -> None:
        self.server, self.trainer, self.release_step = server, trainer, release_step
        server.commit_gate.clear()

    def _wait(self) -> None:
        if self.trainer.push_in_progress is not None:
            self.trainer.push_in_progress.wait_until_done()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.release_step:
            self.server.commit_gate.set()
            self._wait()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.release_step is not None and state.global_step == self.release_step:
            self._wait()  # the queued push started after step release_step

    def on_train_end(self, args, state, control, **kwargs):
        # Trainer waits for the running push right after this callback: open the gate a moment later
        threading.Timer(0.5, self.server.commit_gate.set).start()


def _pushed_step(server, path: str) -> int:
    return json.loads(server.file(REPO, path).data)["global_step"]


def test_saves_during_a_slow_push_are_queued_and_the_newest_is_pushed(hub_server_in_process, tmp_path, caplog):
    server = hub_server_in_process
    output_dir = tmp_path / "out"
    # push 2 hangs until step 7; saves 4 and 6 wait meanwhile (6 supersedes 4); then 6 is pushed, later 8 and 10
    trainer = _trainer(output_dir, max_steps=10, save_steps=2, eval_steps=10, hub_always_push=False)
    trainer.add_callback(_SlowHub(server, trainer, release_step=7))
    with caplog.at_level(logging.INFO, logger="semscale_hf.training.hub_push"):
        trainer.train()

    messages = server.commit_messages(REPO)
    assert messages == ["initial commit"] + [f"Training in progress, step {s}" for s in (2, 6, 8, 10)]
    assert "the Hub push of step 4 waits for the one in progress" in caplog.text
    assert "the push of step 4 is superseded by step 6" in caplog.text
    assert trainer.hub_push_failures == []
    _assert_same_weights(AutoModelForImageClassification.from_pretrained(output_dir / "checkpoint-10"), REPO)


def test_a_save_queued_at_the_end_of_training_is_pushed_before_train_returns(hub_server_in_process, tmp_path):
    server = hub_server_in_process
    output_dir = tmp_path / "out"
    trainer = _trainer(
        output_dir, max_steps=4, save_steps=2, eval_steps=4, hub_always_push=False, hub_strategy="checkpoint"
    )
    trainer.add_callback(_SlowHub(server, trainer, release_step=None))  # push 2 hangs until training has ended
    trainer.train()

    messages = server.commit_messages(REPO)
    assert messages == ["initial commit"] + [
        m for s in (2, 4) for m in (f"Training in progress, step {s}", f"Training in progress, step {s}, checkpoint")
    ]
    assert _pushed_step(server, "last-checkpoint/trainer_state.json") == 4
    assert trainer.hub_push_failures == []
    _assert_same_weights(AutoModelForImageClassification.from_pretrained(output_dir / "checkpoint-4"), REPO)

    trainer.push_to_hub()  # the final push uploads the model as trained, over the checkpoint's files
    assert server.commit_messages(REPO)[-1] == "End of training"
    _assert_same_weights(trainer.model, REPO)


def test_a_queued_push_whose_checkpoint_was_removed_is_listed_as_failed(hub_server_in_process, tmp_path, caplog):
    # e.g. save_total_limit=1 rotated the waiting checkpoint away before the running push finished: it is reported,
    # not silently dropped
    trainer = _trainer(tmp_path)
    trainer._queued_push = (str(tmp_path / "checkpoint-3"), 3, 0.5)
    with caplog.at_level(logging.WARNING):
        trainer._start_queued_push()
    assert trainer._queued_push is None and len(trainer.hub_push_failures) == 1
    assert trainer.hub_push_failures[0].startswith("step 3: FileNotFoundError") and "was removed" in caplog.text


def test_a_push_during_a_save_uploads_no_half_written_checkpoint(hub_server_in_process, tmp_path):
    # the staging folder lay inside output_dir under a name Trainer's upload does not skip: a push running while the
    # next checkpoint was written uploaded that half-written checkpoint, and nothing removed it from the Hub
    server = hub_server_in_process
    # the push of step 2 waits on the Hub until the save of step 6 is under way; the push of step 4 waits behind it
    # and lists output_dir only then
    server.commit_gate.clear()
    trainer = _trainer(tmp_path / "out", save_steps=2, eval_strategy="no")

    original = trainer.save_model

    def save_model(output_dir=None, _internal_call=False):
        original(output_dir, _internal_call)
        if trainer._saving_checkpoint and trainer.state.global_step == 6:  # step 6's files are in the staging folder
            server.commit_gate.set()
            trainer.push_in_progress.wait_until_done()

    trainer.save_model = save_model
    trainer.train()
    assert "Training in progress, step 4" in server.commit_messages(REPO)
    files = server.list_files(REPO)
    assert not [name for name in files if "staging" in name], files


def test_push_failures_are_an_empty_list_without_a_hub_repo(tmp_path):
    # the README points to trainer.hub_push_failures; without push_to_hub it did not exist (AttributeError)
    trainer = _trainer(tmp_path / "out", push_to_hub=False)
    assert trainer.hub_push_failures == []


def test_a_queued_push_carries_the_card_of_its_own_checkpoint(hub_server_in_process, tmp_path):
    # the queued push of step 4 starts after step 5's refresh: its card showed step 5's weights beside step 4's state
    server = hub_server_in_process
    output_dir = tmp_path / "out"
    trainer = _trainer(
        output_dir, max_steps=6, save_steps=2, eval_strategy="no", hub_always_push=False, semscale_refresh_steps=1
    )
    trainer.add_callback(_SlowHub(server, trainer, release_step=5))  # push 2 hangs until step 5; save 4 waits
    trainer.train()
    commit = next(c for c in server.repo(REPO).commits if c.summary == "Training in progress, step 4")
    card = server.read_file(REPO, "README.md", revision=commit.oid).decode()
    saved = load_file(str(output_dir / "checkpoint-4" / STATE_FILE))
    rows = [line for line in card.splitlines() if line.startswith("| LABEL_")]
    assert [row.split("|")[4].strip() for row in rows] == [format(w, ".3f") for w in saved["class_weights"].tolist()]
    assert "global step 4" in card and "last refresh at step 4" in card
