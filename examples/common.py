"""Code shared by the example scripts: tiny models from configs, in-memory digits, training, features, tables, JSONL.

Not a script: the scripts in this folder import it (`from common import ...`), which works because Python puts a
script's own folder first on `sys.path`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForImageClassification, PrinterCallback, ResNetConfig, ViTConfig

from semscale_hf import SemScaleTrainer, SemScaleTrainingArguments
from semscale_hf.commands.demo import DEMO_TRAINING_DEFAULTS
from semscale_hf.core.capture import FeatureCapture
from semscale_hf.data import class_counts, dataset_to_tensors


__all__ = [
    "METHODS",
    "ModelArguments",
    "TensorImageDataset",
    "append_jsonl",
    "build_model",
    "digits_to_tensors",
    "extract_features",
    "markdown_table",
    "mean_std",
    "method_overrides",
    "read_jsonl",
    "seed_everything",
    "settings_id",
    "study_training_defaults",
    "train_and_evaluate",
]

# Training settings shared by the digits scripts: those of `semscale demo` (a tiny ViT reaches a useful accuracy on
# the digits in a few hundred optimizer steps on 2 CPU cores), without per-step logging and the demo's output folder.
STUDY_TRAINING_DEFAULTS: dict[str, Any] = {
    **{key: value for key, value in DEMO_TRAINING_DEFAULTS.items() if key not in {"output_dir", "logging_steps"}},
    "per_device_eval_batch_size": 256,
    "logging_strategy": "no",
    "dataloader_num_workers": 0,
    "semscale_warmup_epochs": 1.0,  # each study method sets its own deferral (method_overrides)
}


def study_training_defaults(**overrides: Any) -> dict[str, Any]:
    """`STUDY_TRAINING_DEFAULTS` with `overrides`, for `HfArgumentParser.set_defaults`."""
    return {**STUDY_TRAINING_DEFAULTS, **overrides}


@dataclass
class ModelArguments:
    """The classifier, built from a config with random weights (no download)."""

    model_type: str = field(
        default="vit", metadata={"help": "Architecture built from a config.", "choices": ["vit", "resnet"]}
    )
    image_size: int = field(default=16, metadata={"help": "Images are resized to this size (digits are 8x8)."})
    patch_size: int = field(default=4, metadata={"help": "ViT patch size."})
    hidden_size: int = field(
        default=64, metadata={"help": "ViT hidden size; ResNet: width of the last stage (stages double up to it)."}
    )
    num_hidden_layers: int = field(default=2, metadata={"help": "ViT depth; ResNet: number of stages."})
    num_attention_heads: int = field(default=4, metadata={"help": "ViT attention heads."})


def build_model(model_args: ModelArguments, num_labels: int, seed: int) -> torch.nn.Module:
    """A randomly initialised `AutoModelForImageClassification` (ViT or ResNet) for 3-channel images.

    The initialisation is seeded with `seed`, so two methods trained with the same seed start from the same weights.
    """
    labels = {"id2label": {i: str(i) for i in range(num_labels)}, "label2id": {str(i): i for i in range(num_labels)}}
    if model_args.model_type == "vit":
        if model_args.image_size % model_args.patch_size:
            raise ValueError(
                f"image_size={model_args.image_size} must be a multiple of patch_size={model_args.patch_size}"
            )
        config = ViTConfig(
            image_size=model_args.image_size,
            patch_size=model_args.patch_size,
            num_channels=3,
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=2 * model_args.hidden_size,
            num_labels=num_labels,
            **labels,
        )
    elif model_args.model_type == "resnet":
        stages = model_args.num_hidden_layers
        widths = [max(model_args.hidden_size >> (stages - 1 - i), 8) for i in range(stages)]
        config = ResNetConfig(
            num_channels=3,
            embedding_size=widths[0],
            hidden_sizes=widths,
            depths=[1] * stages,
            layer_type="basic",
            downsample_in_first_stage=False,
            num_labels=num_labels,
            **labels,
        )
    else:
        raise ValueError(f"model_type must be 'vit' or 'resnet', got {model_args.model_type!r}")
    torch.manual_seed(seed)
    return AutoModelForImageClassification.from_config(config)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (Trainer seeds again from `args.seed` at the start of training)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TensorImageDataset(torch.utils.data.Dataset):
    """Pre-transformed images in memory: items `{"pixel_values": (3, H, W), "labels": ()}`.

    Transforming the small digits once, instead of decoding PIL images in every batch of every epoch, roughly halves
    the training time of the tiny models here.
    """

    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        if pixel_values.shape[0] != labels.shape[0]:
            raise ValueError(f"{pixel_values.shape[0]} images but {labels.shape[0]} labels")
        self.pixel_values, self.labels = pixel_values, labels.long()

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


def digits_to_tensors(splits: Any, image_size: int) -> tuple[TensorImageDataset, TensorImageDataset, list[int]]:
    """The "train" and "test" splits of a digits `DatasetDict` as in-memory datasets, and the train class counts."""
    counts = class_counts(splits["train"])
    train = TensorImageDataset(*dataset_to_tensors(splits["train"], image_size))
    test = TensorImageDataset(*dataset_to_tensors(splits["test"], image_size))
    return train, test, counts


def train_and_evaluate(
    model_args: ModelArguments,
    args: SemScaleTrainingArguments,
    train: torch.utils.data.Dataset,
    test: torch.utils.data.Dataset,
    counts: Sequence[int],
    *,
    quiet: bool = True,
) -> tuple[SemScaleTrainer, dict[str, float]]:
    """Trains a fresh model (seeded with `args.seed`) with `SemScaleTrainer` and evaluates it on `test`.

    Returns the trainer (for `semantic_scales`, `class_weights` and the model) and the evaluation metrics, with
    `train_seconds` added. `quiet` drops Trainer's printing of every log (with `disable_tqdm` it prints each dict).
    """
    trainer = SemScaleTrainer(
        model=build_model(model_args, len(counts), args.seed),
        args=args,
        train_dataset=train,
        eval_dataset=test,
        class_counts=list(counts),
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    metrics = trainer.evaluate()
    metrics["train_seconds"] = time.perf_counter() - start
    trainer.remove_hooks()
    return trainer, metrics


@torch.no_grad()
def extract_features(
    model: torch.nn.Module, pixel_values: torch.Tensor, *, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (the head's input) and logits of `model` in eval mode, float32 on the CPU."""
    num_labels = model.config.num_labels
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    features, logits = [], []
    try:
        with FeatureCapture(model, num_labels) as capture:
            for start in range(0, pixel_values.shape[0], batch_size):
                outputs = model(pixel_values=pixel_values[start : start + batch_size].to(device))
                features.append(capture.pop().float().cpu())
                logits.append(outputs.logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(features), torch.cat(logits)


# ------------------------------------------------------------------------------------------------ methods of the study
# Each method is a set of `SemScaleTrainingArguments` overrides. "deferred": the class weights start after the
# warm-up (the deferred re-weighting of LDAM-DRW, and the warm-up of the paper's dynamic framework); the others
# weight from the first step (or never).
METHODS: dict[str, dict[str, Any]] = {
    "ce": {"semscale_weighting": "none", "semscale_base_loss": "ce"},
    "inverse_frequency": {"semscale_weighting": "inverse_frequency", "semscale_base_loss": "ce"},
    # beta 0.99: with the default 0.9999, E(n) ~ n for n <= 122 and this would repeat inverse_frequency
    "class_balanced": {
        "semscale_weighting": "effective_number",
        "semscale_base_loss": "ce",
        "semscale_effective_number_beta": 0.99,
    },
    "ldam_drw": {
        "semscale_weighting": "effective_number",
        "semscale_base_loss": "ldam",
        "semscale_effective_number_beta": 0.9999,
        "deferred": True,
    },
    "semscale_ce_p+1": {"semscale_weighting": "semantic_scale", "semscale_power": 1.0, "deferred": True},
    "semscale_ce_p-1": {"semscale_weighting": "semantic_scale", "semscale_power": -1.0, "deferred": True},
    "semscale_ldam_p+1": {
        "semscale_weighting": "semantic_scale",
        "semscale_base_loss": "ldam",
        "semscale_power": 1.0,
        "deferred": True,
    },
    "semscale_ldam_p-1": {
        "semscale_weighting": "semantic_scale",
        "semscale_base_loss": "ldam",
        "semscale_power": -1.0,
        "deferred": True,
    },
    "focal": {"semscale_weighting": "none", "semscale_base_loss": "focal"},
    "semscale_focal_p+1": {
        "semscale_weighting": "semantic_scale",
        "semscale_base_loss": "focal",
        "semscale_power": 1.0,
        "deferred": True,
    },
    "semscale_focal_p-1": {
        "semscale_weighting": "semantic_scale",
        "semscale_base_loss": "focal",
        "semscale_power": -1.0,
        "deferred": True,
    },
}


def method_overrides(method: str, *, num_train_epochs: float, deferred_fraction: float) -> dict[str, Any]:
    """`SemScaleTrainingArguments` overrides of one study method.

    Deferred methods warm up for `deferred_fraction` of the epochs; the others get no warm-up, so their count-based
    weights (or none) apply from the first step.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    if not 0.0 <= deferred_fraction < 1.0:
        raise ValueError(f"deferred_fraction must be in [0, 1), got {deferred_fraction}")
    overrides = {"semscale_base_loss": "ce", "semscale_power": 1.0, **METHODS[method]}
    deferred = overrides.pop("deferred", False)
    overrides["semscale_warmup_epochs"] = deferred_fraction * num_train_epochs if deferred else 0.0
    overrides["semscale_warmup_steps"] = None
    return overrides


# ------------------------------------------------------------------------------------------------------ results I/O
def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Appends one JSON record as a line and flushes it to disk, so a crash loses at most the run in progress."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a JSONL file (none if it does not exist); a truncated last line (a crash mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def settings_id(settings: dict[str, Any]) -> str:
    """Short hash of a JSON-serialisable settings dict: runs are resumed only under the same settings."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def mean_std(values: Iterable[float], digits: int = 3) -> str:
    """`"mean ± std"` (sample standard deviation) of the finite values; `"n/a"` when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.{digits}f}"
    return f"{statistics.mean(finite):.{digits}f} ± {statistics.stdev(finite):.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; `align` has one character per column, `l` or `r` (default: first left, others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError(f"align has {len(align)} characters for {len(headers)} columns")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def save_figure(figure: Any, path: Path) -> Path:
    """Writes a pyplot figure as a 120-dpi image (creating the folder) and closes it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
