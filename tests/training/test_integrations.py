"""`SemScaleTrainer` with the libraries and Trainer options around it: PEFT/LoRA, `torch_compile`, TensorBoard, audio.

Each test trains a tiny model from a config for a few steps and checks that the pool filled from the model that was
actually trained and that the weights were refreshed; the README's "Works with" table lists them.
"""

from __future__ import annotations

import pytest
import torch
from _helpers.tiny_configs import wav2vec2_config
from _helpers.trainer_utils import digits_dataset, make_args, tiny_vit
from datasets import Dataset
from transformers import AutoModelForAudioClassification

from semscale_hf import SemScaleTrainer
from semscale_hf.core.metric_keys import CLASSES_MEASURED, WEIGHT_MAX


COUNTS = [12, 6, 4, 2]  # 24 samples, batch 4: 6 steps per epoch


def _args(tmp_path, **overrides):
    # refreshes at steps 3 and 6: the last one sees all 24 samples (the pool's capacity), so every class is measured
    return make_args(tmp_path, max_steps=6, semscale_warmup_steps=3, semscale_refresh_steps=3, **overrides)


def _assert_refreshed(trainer: SemScaleTrainer) -> None:
    assert trainer.balancer.pool.counts.tolist() == COUNTS
    assert trainer.balancer.num_refreshes == 2 and torch.isfinite(trainer.semantic_scales).all()
    assert not torch.equal(trainer.class_weights, torch.ones(4, dtype=torch.float64))


def test_peft_lora_with_the_head_in_modules_to_save(tmp_path):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"])
    model = peft.get_peft_model(tiny_vit(), config)
    trainer = SemScaleTrainer(model=model, args=_args(tmp_path), train_dataset=digits_dataset(counts=COUNTS))
    # the trained copy of the head, not the frozen original that modules_to_save keeps beside it
    assert "modules_to_save" in trainer.capture.module_name
    before = model.base_model.model.classifier.original_module.weight.detach().clone()
    trainer.train()
    _assert_refreshed(trainer)
    assert torch.equal(model.base_model.model.classifier.original_module.weight, before)


def test_torch_compile(tmp_path):
    args = _args(tmp_path, torch_compile=True, torch_compile_backend="aot_eager")
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(counts=COUNTS))
    trainer.train()
    assert isinstance(trainer.model_wrapped, torch._dynamo.eval_frame.OptimizedModule)  # compiled, hook and all
    _assert_refreshed(trainer)


def test_report_to_tensorboard_gets_the_semscale_scalars(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "runs"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(logs))  # transformers 5.x: logging_dir is gone
    args = _args(tmp_path, report_to=["tensorboard"])
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(counts=COUNTS))
    trainer.train()
    events = EventAccumulator(str(logs))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {CLASSES_MEASURED, WEIGHT_MAX, "train/loss"} <= {tag.removeprefix("train/") for tag in tags} | tags
    assert [event.step for event in events.Scalars(next(t for t in tags if t.endswith(WEIGHT_MAX)))] == [3, 6]


def test_audio_classification_on_random_waveforms(tmp_path):
    config = wav2vec2_config(num_labels=4)
    torch.manual_seed(0)
    model = AutoModelForAudioClassification.from_config(config)
    generator = torch.Generator().manual_seed(0)
    labels = torch.repeat_interleave(torch.arange(4), torch.tensor(COUNTS))
    waves = torch.randn(len(labels), 800, generator=generator) + labels[:, None] * 0.1
    data = Dataset.from_dict({"input_values": waves.numpy(), "labels": labels.numpy()}).with_format("torch")
    trainer = SemScaleTrainer(model=model, args=_args(tmp_path), train_dataset=data)
    assert trainer.capture.module_name == "classifier" and trainer.capture.dim == 8
    trainer.train()
    _assert_refreshed(trainer)
