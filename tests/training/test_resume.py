"""Resumes from damaged checkpoints: what a missing pool or a missing state does, and that the warnings say so."""

import logging
import shutil

import pytest
import torch
from _helpers.trainer_utils import digits_dataset, make_args, tiny_vit
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from semscale_hf import SemScaleTrainer
from semscale_hf.core.balancer import POOL_FILE, STATE_FILE


def _checkpoint(tmp_path, data, **schedule):
    # warm-up 2 steps, refresh every 3: refreshes at steps 2, 5, 8, ...; the first measured 8 features
    args = make_args(tmp_path / "full", num_train_epochs=3, save_strategy="steps", save_steps=4, **schedule)
    full = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data)
    full.train()
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "full" / "checkpoint-4", damaged)
    return damaged


def _resume(tmp_path, checkpoint, data, caplog, class_counts=None, **schedule):
    args = make_args(tmp_path / "resumed", num_train_epochs=3, **schedule)
    trainer = SemScaleTrainer(model=tiny_vit(seed=1), args=args, train_dataset=data, class_counts=class_counts)
    seen = []
    original = trainer.balancer.loss_weights

    def spy(*args, **kwargs):
        weights = original(*args, **kwargs)
        seen.append((trainer.state.global_step, None if weights is None else weights.double().cpu()))
        return weights

    trainer.balancer.loss_weights = spy
    with caplog.at_level(logging.WARNING, logger="semscale_hf.training.trainer"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    # the log history of the run before the checkpoint (steps 1-4) is restored with it
    refreshes = [e["step"] for e in trainer.state.log_history if "semscale/refreshes" in e and e["step"] > 4]
    return trainer, seen, refreshes


def test_a_missing_pool_keeps_the_checkpoint_weights_and_the_next_refresh_waits(tmp_path, caplog):
    data = digits_dataset(counts=[16, 10, 6, 4])
    checkpoint = _checkpoint(tmp_path, data)
    saved_weights = load_file(str(checkpoint / STATE_FILE))["class_weights"]
    (checkpoint / POOL_FILE).unlink()
    trainer, seen, refreshes = _resume(tmp_path, checkpoint, data, caplog)
    assert f"has {STATE_FILE} but no {POOL_FILE}" in caplog.text
    assert "weights stay in force, and the next refresh waits until the pool holds 8 features" in caplog.text
    first_step, first_weights = seen[0]
    assert first_step == 4 and torch.allclose(first_weights, saved_weights.double(), rtol=1e-6)
    # due at step 5, but the refilled pool holds 4 features then: the refresh comes at step 6 (8 features)
    assert refreshes[0] == 6 and all(torch.equal(w, first_weights) for step, w in seen if step < 6)


def test_a_missing_state_restarts_warm_up_at_the_resumed_step(tmp_path, caplog):
    data = digits_dataset(counts=[16, 10, 6, 4])
    checkpoint = _checkpoint(tmp_path, data)
    (checkpoint / POOL_FILE).unlink()
    (checkpoint / STATE_FILE).unlink()
    trainer, seen, refreshes = _resume(tmp_path, checkpoint, data, caplog)
    assert (
        "warm-up restarts at the resumed step: the loss is unweighted for the next 2 steps (semscale_warmup_steps), "
        "then the first measurement sees only the features gathered after the resume"
    ) in caplog.text
    # unweighted for the 2 warm-up steps after the resume (steps 4 and 5), then the first measurement at step 6
    assert all(w is None for step, w in seen if step < 6) and refreshes[0] == 6
    assert trainer.balancer.warmup_start_step == 4


def test_a_missing_pool_during_warm_up_warns_that_the_first_measurement_sees_only_new_features(tmp_path, caplog):
    data = digits_dataset(counts=[16, 10, 6, 4])
    warm_up = {"semscale_warmup_steps": 6}  # checkpoint-4 is still in warm-up: no weights to keep, a pool to lose
    checkpoint = _checkpoint(tmp_path, data, **warm_up)
    (checkpoint / POOL_FILE).unlink()
    trainer, seen, refreshes = _resume(tmp_path, checkpoint, data, caplog, **warm_up)
    assert (
        f"has {STATE_FILE} but no {POOL_FILE}: the feature pool starts empty; warm-up goes on as scheduled, but the "
        "first measurement sees only the features gathered after the resume"
    ) in caplog.text
    # as it says: the measurement at step 6 (as scheduled) saw the 2 batches of steps 5 and 6, not 6 batches
    first = next(e for e in trainer.state.log_history if "semscale/refreshes" in e)
    assert first["step"] == 6 and first["semscale/pool_features"] == 8
    assert refreshes[0] == 6 and all(w is None for step, w in seen if step < 6)


def test_changed_class_counts_warn_that_the_pool_was_not_restored(tmp_path, caplog):
    data = digits_dataset(counts=[16, 10, 6, 4])
    checkpoint = _checkpoint(tmp_path, data)  # the pool file is there
    with caplog.at_level(logging.WARNING, logger="semscale_hf.core.balancer"):
        _resume(tmp_path, checkpoint, data, caplog, class_counts=[16, 10, 6, 5])
    assert "differ from this training set's" in caplog.text
    assert "class weights stay in force until the next refresh" in caplog.text
    assert f"was saved with other class counts, so its {POOL_FILE} is not restored" in caplog.text
    assert "but no" not in caplog.text  # the file is there: the warning must not say it is missing


def test_a_sharded_checkpoint_restores_every_weight(tmp_path):
    # ViT is saved under legacy names that only from_pretrained converts: a sharded checkpoint must be reloaded too
    data = digits_dataset(counts=[16, 10, 6, 4])
    args = make_args(tmp_path / "full", num_train_epochs=3, save_strategy="steps", save_steps=4)
    full = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-4"
    trained = type(full.model).from_pretrained(str(checkpoint))
    (checkpoint / "model.safetensors").unlink()
    trained.save_pretrained(str(checkpoint), max_shard_size="4KB")  # several model-0000k-of-0000n files
    assert (checkpoint / "model.safetensors.index.json").is_file() and not (checkpoint / "model.safetensors").exists()
    args = make_args(tmp_path / "resumed", num_train_epochs=3)
    resumed = SemScaleTrainer(model=tiny_vit(seed=1), args=args, train_dataset=data)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for (name, p), q in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


class OptimizerSteps(TrainerCallback):
    count = 0

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.count += 1


@pytest.mark.parametrize("damage", ["truncated", "negative weight"])
def test_a_damaged_state_fails_the_resume_before_the_first_step(tmp_path, damage):
    data = digits_dataset(counts=[16, 10, 6, 4])
    checkpoint = _checkpoint(tmp_path, data)
    path = checkpoint / STATE_FILE
    if damage == "truncated":  # caught by the completeness check, before Trainer loads anything
        path.write_bytes(path.read_bytes()[:100])
    else:  # a readable file with a bad value: caught when the state is loaded, before the training loop
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
        tensors["class_weights"][1] = -1.0
        save_file(tensors, str(path), metadata=metadata)
    output = tmp_path / "resumed"
    args = make_args(output, num_train_epochs=3, save_strategy="steps", save_steps=1)
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data, callbacks=[steps := OptimizerSteps()])
    with pytest.raises(ValueError, match=STATE_FILE):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert steps.count == 0 and not list(output.glob("checkpoint-*"))


class StartStep(TrainerCallback):
    """Keeps the step training started from (training is deterministic: only this tells a resume from a new run)."""

    steps = ()

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = (*self.steps, state.global_step)


def test_resume_true_skips_incomplete_checkpoints_and_a_path_to_one_fails_at_once(tmp_path, caplog):
    data = digits_dataset(counts=[16, 10, 6, 4])
    args = make_args(tmp_path / "run", max_steps=6, save_strategy="steps", save_steps=2)
    SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data).train()
    run = tmp_path / "run"
    # damage the newest checkpoints as a save killed by other code would leave them
    (run / "checkpoint-6" / "optimizer.pt").unlink()
    (run / "checkpoint-4" / "trainer_state.json").write_text("")
    resumed = SemScaleTrainer(model=tiny_vit(), args=make_args(run, max_steps=6, save_strategy="no"),
                              train_dataset=data, callbacks=[start := StartStep()])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="semscale_hf.training.trainer"):
        resumed.train(resume_from_checkpoint=True)
    assert "checkpoint-6: optimizer.pt is missing" in caplog.text
    assert "checkpoint-4: trainer_state.json is empty or not valid JSON" in caplog.text
    assert start.steps == (2,), "training did not start from checkpoint-2, the newest complete one"
    assert resumed.state.global_step == 6 and len([e for e in resumed.state.log_history if "loss" in e]) == 6
    with pytest.raises(ValueError, match="checkpoint-6 is an incomplete checkpoint: optimizer.pt is missing"):
        resumed.train(resume_from_checkpoint=str(run / "checkpoint-6"))
