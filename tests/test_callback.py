import math

import pytest
import torch
from trainer_utils import TRAINER_DEFAULTS, digits_dataset, tiny_vit
from transformers import Trainer, TrainingArguments

from semscale_hf import SemScaleCallback, class_semantic_scales


def test_measure_only_on_plain_trainer_logs_scales_and_leaves_training_alone(tmp_path):
    data = digits_dataset(counts=[16, 10, 6, 4])
    watched_args = TrainingArguments(output_dir=str(tmp_path / "watched"), **TRAINER_DEFAULTS)
    plain_args = TrainingArguments(output_dir=str(tmp_path / "plain"), **TRAINER_DEFAULTS)
    watched = Trainer(model=tiny_vit(), args=watched_args, train_dataset=data)
    callback = SemScaleCallback.attach(watched, warmup_steps=3, refresh_steps=4)
    watched.train()
    plain = Trainer(model=tiny_vit(), args=plain_args, train_dataset=data)
    plain.train()

    def train_losses(trainer):
        return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    assert train_losses(watched) == train_losses(plain)  # measure-only: the loss is untouched
    logged = [entry for entry in watched.state.log_history if "semscale/scale_mean" in entry]
    assert [entry["step"] for entry in logged] == [3, 7, 11, 15]
    assert all(entry["semscale/weight_max"] == 1.0 for entry in logged)
    # the pool holds the head inputs of training batches; measuring it again gives the logged scales
    features, labels = callback.balancer.pool.features_and_labels()
    assert callback.balancer.pool.counts.tolist() == [16, 10, 6, 4]
    assert features.shape[1] == watched.model.config.hidden_size
    assert torch.equal(class_semantic_scales(features, labels, 4), callback.balancer.measure())
    assert not math.isnan(logged[-1]["semscale/scale_min"])
    # hooks are gone after training
    assert not watched.model._forward_hooks and not watched.model._forward_pre_hooks
    assert not watched.model.classifier._forward_pre_hooks


def test_unlinked_callback_says_how_to_link(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(), callbacks=[SemScaleCallback()])
    with pytest.raises(RuntimeError, match=r"SemScaleCallback\.attach\(trainer\)"):
        trainer.train()
