"""SemScaleTrainer on tiny random-config models of several architectures, and with training options that change the
forward pass (gradient checkpointing, bf16 autocast) or the pool storage (float16)."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from _helpers.tiny_configs import bert_config, convnext_config, resnet_config, swin_config
from _helpers.trainer_utils import TRAINER_DEFAULTS
from datasets import Dataset
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    DeiTConfig,
    ViTConfig,
)
from transformers.modeling_layers import GradientCheckpointingLayer

from semscale_hf import SemScaleTrainer, SemScaleTrainingArguments


NUM_LABELS = 3
COUNTS = [8, 5, 3]  # 16 samples, batch 4: 4 steps per epoch
_VIT_SIZES = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}

# Tiny configs (docs/hf-ecosystem.md section 4); the head's in_features is written out, not read from the model.
IMAGE_CONFIGS = {
    "vit": (
        lambda: ViTConfig(**_VIT_SIZES, num_labels=NUM_LABELS),
        32,
    ),
    # DeiT maps to two classes (with and without teacher); without `architectures` from_config raises TypeError
    "deit": (
        lambda: DeiTConfig(**_VIT_SIZES, num_labels=NUM_LABELS, architectures=["DeiTForImageClassification"]),
        32,
    ),
    "swin": (lambda: swin_config(NUM_LABELS), 32),
    "convnext": (lambda: convnext_config(NUM_LABELS), 16),
    "resnet": (lambda: resnet_config(NUM_LABELS), 16),
}
BERT_DIM = 32


def image_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForImageClassification.from_config(IMAGE_CONFIGS[name][0]())


def bert_model(seed: int = 0):
    torch.manual_seed(seed)
    # no dropout: runs with and without checkpointing must match
    config = bert_config(NUM_LABELS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return AutoModelForSequenceClassification.from_config(config)


def labels_array() -> np.ndarray:
    labels = np.repeat(np.arange(NUM_LABELS), COUNTS)
    return np.random.default_rng(0).permutation(labels)


class ImageData(torch.utils.data.Dataset):
    """Random images with a class-dependent mean; a plain torch dataset (the Arrow formatter costs ~0.3 s per run)."""

    def __init__(self) -> None:
        labels = labels_array()
        generator = torch.Generator().manual_seed(1)
        self.labels = torch.from_numpy(labels)
        self.pixel_values = torch.randn(len(labels), 3, 32, 32, generator=generator) + self.labels[:, None, None, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


def image_data() -> ImageData:
    return ImageData()


def text_data() -> Dataset:
    labels = labels_array()
    rng = np.random.default_rng(2)
    input_ids = rng.integers(1, 99, size=(len(labels), 8))
    lengths = rng.integers(3, 9, size=len(labels))
    attention_mask = (np.arange(8)[None, :] < lengths[:, None]).astype(np.int64)
    input_ids = input_ids * attention_mask  # padding id 0
    return Dataset.from_dict({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}).with_format(
        "torch"
    )


def make_args(output_dir, **overrides) -> SemScaleTrainingArguments:
    defaults = {
        "max_steps": 5,
        "lr_scheduler_type": "constant",
        "semscale_warmup_steps": 1,
        "semscale_refresh_steps": 2,
    }
    return SemScaleTrainingArguments(output_dir=str(output_dir), **{**TRAINER_DEFAULTS, **defaults, **overrides})


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def count_layer_calls(model) -> list[int]:
    """Counts forward calls of a Linear inside the first checkpointable layer (recomputed under checkpointing)."""
    layer = next(m for m in model.modules() if isinstance(m, GradientCheckpointingLayer))
    linear = next(m for m in layer.modules() if isinstance(m, torch.nn.Linear))
    calls = [0]

    def count(module, args, output):
        calls[0] += 1

    linear.register_forward_hook(count)
    return calls


@dataclass
class Run:
    trainer: SemScaleTrainer
    before: dict[str, torch.Tensor]  # parameters before training
    layer_calls: list[int]  # forward calls of a Linear in the first encoder layer
    head_dtypes: set[torch.dtype]  # dtypes of the head's input and output seen during training


def train(model, data: torch.utils.data.Dataset, output_dir, **overrides) -> Run:
    before = snapshot(model)
    layer_calls = (
        count_layer_calls(model) if any(isinstance(m, GradientCheckpointingLayer) for m in model.modules()) else []
    )
    trainer = SemScaleTrainer(
        model=model, args=make_args(output_dir, **overrides), train_dataset=data, class_counts=COUNTS
    )
    head_dtypes = set()
    trainer.capture.head.register_forward_hook(
        lambda module, args, output: head_dtypes.update({args[0].dtype, output.dtype})
    )
    trainer.train()
    return Run(trainer, before, layer_calls, head_dtypes)


def assert_trained_and_weighted(run: Run, dim: int) -> None:
    trainer = run.trainer
    pool = trainer.balancer.pool
    assert trainer.capture.head.in_features == dim and pool.dim == dim
    # 5 steps of batch 4 = one epoch and a batch: the pool (capacity = class count) holds every sample once
    assert pool.counts.tolist() == COUNTS and int(pool.num_seen.sum()) == 20
    # warm-up ends at step 1; refreshes at steps 1, 3 and 5, the last one on the full pool
    assert trainer.balancer.num_refreshes == 3 and trainer.balancer.stage == "balanced"
    weights, scales = trainer.class_weights, trainer.semantic_scales
    assert weights.dtype == torch.float64 and scales.dtype == torch.float64
    assert torch.isfinite(weights).all() and torch.isfinite(scales).all()
    assert not torch.allclose(weights, torch.ones_like(weights))
    after = dict(trainer.model.named_parameters())
    unchanged = [name for name, value in run.before.items() if torch.equal(value, after[name].detach().cpu())]
    assert not unchanged


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine every parallel op waits for a
    descheduled worker: one thread made this file 5x faster (120 s -> 22 s) on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The plain ViT and BERT runs serve several tests: each training costs a second or more on a loaded 2-core machine.
@pytest.fixture(scope="module")
def vit_run(tmp_path_factory) -> Run:
    return train(image_model("vit"), image_data(), tmp_path_factory.mktemp("vit"))


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory) -> Run:
    return train(bert_model(), text_data(), tmp_path_factory.mktemp("bert"))


# ------------------------------------------------------------------------------------------------ architectures
@pytest.mark.parametrize("name", list(IMAGE_CONFIGS))
def test_image_architectures_train_with_weights(tmp_path, request, name):
    run = request.getfixturevalue("vit_run") if name == "vit" else train(image_model(name), image_data(), tmp_path)
    assert_trained_and_weighted(run, IMAGE_CONFIGS[name][1])


def test_bert_sequence_classification_trains_with_weights(bert_run):
    assert bert_run.trainer.capture.module_name == "classifier"
    assert_trained_and_weighted(bert_run, BERT_DIM)


# ------------------------------------------------------------------------------------------------ training options
# `gradient_checkpointing` is the name every transformers 5.x takes; 5.24 renames it `activation_checkpointing`
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", ["vit", "bert"])
def test_gradient_checkpointing_gives_the_same_pool_and_weights(tmp_path, request, name):
    plain = request.getfixturevalue(f"{name}_run")
    model, data = (bert_model(), text_data()) if name == "bert" else (image_model("vit"), image_data())
    checkpointed = train(model, data, tmp_path, gradient_checkpointing=True)
    # checkpointing really ran: the layer's forward ran again in each backward pass
    assert plain.layer_calls == [5] and checkpointed.layer_calls == [10]
    # the re-run forward passes must not add features twice
    pool_a, pool_b = plain.trainer.balancer.pool, checkpointed.trainer.balancer.pool
    assert pool_b.num_seen.tolist() == pool_a.num_seen.tolist()
    features_a, labels_a = pool_a.features_and_labels()
    features_b, labels_b = pool_b.features_and_labels()
    assert torch.equal(labels_a, labels_b)
    torch.testing.assert_close(features_b, features_a, rtol=1e-4, atol=1e-5)
    a, b = plain.trainer, checkpointed.trainer
    torch.testing.assert_close(b.semantic_scales, a.semantic_scales, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.class_weights, a.class_weights, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_on_cpu_trains_with_float64_scales(tmp_path):
    run = train(image_model("vit"), image_data(), tmp_path, bf16=True)
    assert run.trainer.accelerator.mixed_precision == "bf16"
    assert torch.bfloat16 in run.head_dtypes  # autocast really ran the head in bf16
    assert run.trainer.balancer.pool.dtype == torch.float32  # features are stored in the pool's dtype
    assert_trained_and_weighted(run, IMAGE_CONFIGS["vit"][1])


def test_float16_pool_matches_float32_pool(tmp_path, vit_run):
    half = train(image_model("vit"), image_data(), tmp_path, semscale_pool_dtype="float16")
    assert half.trainer.balancer.pool.dtype == torch.float16
    assert_trained_and_weighted(half, IMAGE_CONFIGS["vit"][1])
    features_half, labels_half = half.trainer.balancer.pool.features_and_labels()
    features_full, labels_full = vit_run.trainer.balancer.pool.features_and_labels()
    assert features_half.dtype == torch.float16 and torch.equal(labels_half, labels_full)
    # only float16 rounding differs (relative 2**-11), in the pool and through the weights in training (seen: features
    # 9e-4 apart at magnitude 2.3, scales 9e-5 apart), so the runs stay close
    torch.testing.assert_close(features_half.float(), features_full, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(half.trainer.semantic_scales, vit_run.trainer.semantic_scales, rtol=1e-3, atol=0)
    torch.testing.assert_close(half.trainer.class_weights, vit_run.trainer.class_weights, rtol=1e-3, atol=0)
