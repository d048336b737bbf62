# /// script
# requires-python = ">=3.10"
# dependencies = ["semscale-hf"]
# ///
"""CIFAR-10-LT / CIFAR-100-LT with `SemScaleTrainer`, for users with Hugging Face Hub access (and ideally a GPU).

The long-tailed train split is built from `uoft-cs/cifar10` or `uoft-cs/cifar100` (fine labels) with
`semscale_hf.data.load_cifar_lt` (Cao et al.'s exponential profile: 5,000 or 500 images in the head class); the test
split stays balanced. The model is a ViT or a ResNet built from a config with random weights (`--model_type`, sizes
as flags). Every `SemScaleTrainingArguments` field is a flag: the weighting (`--semscale_weighting`,
`--semscale_power`), the base loss (`--semscale_base_loss ce|focal|ldam`), the warm-up (`--semscale_warmup_epochs`)
and every `TrainingArguments` option (`--bf16`, `--per_device_train_batch_size`, ...). The final metrics (overall,
balanced, many/medium/few-shot accuracy) are printed and written to `<output_dir>/results.json`.

Usage (downloads CIFAR-10 on the first run):

    python examples/cifar_lt.py --dataset_name cifar10 --imbalance_factor 100 --model_type resnet \
        --semscale_weighting semantic_scale --semscale_power 1 --output_dir outputs/cifar10-lt-semscale

    # LDAM-DRW baseline, CIFAR-100-LT, a ViT
    python examples/cifar_lt.py --dataset_name cifar100 --model_type vit --semscale_base_loss ldam \
        --semscale_weighting effective_number --semscale_warmup_epochs 160 --num_train_epochs 200

Without Hub access nothing here runs; the data-building code (`build_cifar_splits`) is tested on the digits.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from common import ModelArguments, build_model, markdown_table
from transformers import HfArgumentParser

from semscale_hf import SemScaleTrainer, SemScaleTrainingArguments
from semscale_hf.data import build_long_tailed_splits, class_counts, load_cifar_lt, make_image_transform


logger = logging.getLogger("cifar_lt")

# Hub column names of the image and the label used by `load_cifar_lt`
CIFAR_COLUMNS = {"cifar10": ("img", "label"), "cifar100": ("img", "fine_label")}
# CIFAR statistics (per channel), the usual normalisation
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

CIFAR_TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/cifar-lt",
    "num_train_epochs": 200,
    "per_device_train_batch_size": 128,
    "per_device_eval_batch_size": 512,
    "learning_rate": 1e-3,
    "weight_decay": 0.05,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "eval_strategy": "no",
    "save_strategy": "epoch",
    "save_total_limit": 1,
    "logging_steps": 50,
    "report_to": "none",
    "remove_unused_columns": False,  # the transform needs the raw `image` column
    "dataloader_num_workers": 4,
    "semscale_warmup_epochs": 160,  # the deferral of LDAM-DRW (Cao et al.): weights in the last fifth
    # model defaults for 32x32 images (also `ModelArguments` fields)
    "image_size": 32,
    "hidden_size": 192,
    "num_hidden_layers": 6,
    "num_attention_heads": 3,
}


@dataclass
class CifarArguments:
    """Which CIFAR-LT benchmark."""

    dataset_name: str = field(default="cifar10", metadata={"help": "Dataset.", "choices": list(CIFAR_COLUMNS)})
    imbalance_factor: float = field(default=100.0, metadata={"help": "Head-to-tail ratio (10, 50, 100, 200)."})
    profile: str = field(default="exp", metadata={"help": "Long-tail profile.", "choices": ["exp", "step"]})
    data_seed_lt: int = field(default=0, metadata={"help": "Seed of the long-tailed subset."})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache directory."})
    augment: bool = field(default=True, metadata={"help": "Random crop (padding 4) and horizontal flip in training."})


def build_cifar_splits(
    cifar: CifarArguments, dataset_dict: datasets.DatasetDict | None = None
) -> datasets.DatasetDict:
    """The long-tailed "train" and the balanced "test" split, with columns "image" and "label".

    Args:
        cifar (`CifarArguments`): the benchmark.
        dataset_dict (`datasets.DatasetDict`, *optional*):
            Already loaded splits with the Hub's column names (`img` and `label` or `fine_label`); downloaded with
            `load_cifar_lt` when not given.
    """
    if cifar.dataset_name not in CIFAR_COLUMNS:
        raise ValueError(f"dataset_name must be one of {list(CIFAR_COLUMNS)}, got {cifar.dataset_name!r}")
    if dataset_dict is None:
        return load_cifar_lt(
            cifar.dataset_name,
            imbalance_factor=cifar.imbalance_factor,
            profile=cifar.profile,
            seed=cifar.data_seed_lt,
            cache_dir=cifar.cache_dir,
        )
    image_column, label_column = CIFAR_COLUMNS[cifar.dataset_name]
    return build_long_tailed_splits(
        dataset_dict,
        image_column=image_column,
        label_column=label_column,
        imbalance_factor=cifar.imbalance_factor,
        profile=cifar.profile,
        seed=cifar.data_seed_lt,
    )


def make_transforms(
    image_size: int, *, augment: bool, seed: int = 0
) -> tuple[Callable[[dict], dict], Callable[[dict], dict]]:
    """Train and eval batch transforms: resize, normalise with the CIFAR statistics; train adds crop and flip."""
    base = make_image_transform(image_size, num_channels=3, mean=CIFAR_MEAN, std=CIFAR_STD)
    if not augment:
        return base, base
    generator = torch.Generator().manual_seed(seed)

    def train_transform(batch: dict) -> dict:
        out = base(batch)
        pixels = out["pixel_values"]
        padded = torch.nn.functional.pad(pixels, (4, 4, 4, 4), mode="reflect")
        offsets = torch.randint(0, 9, (pixels.shape[0], 2), generator=generator)
        flips = torch.rand(pixels.shape[0], generator=generator) < 0.5
        crops = []
        for image, (dy, dx), flip in zip(padded, offsets.tolist(), flips.tolist()):
            crop = image[:, dy : dy + image_size, dx : dx + image_size]
            crops.append(crop.flip(-1) if flip else crop)
        out["pixel_values"] = torch.stack(crops)
        return out

    return train_transform, base


def main(argv: list[str] | None = None, dataset_dict: datasets.DatasetDict | None = None) -> int:
    """Runs the script; `dataset_dict` (with the Hub's column names) replaces the download, e.g. in tests."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    parser = HfArgumentParser((CifarArguments, ModelArguments, SemScaleTrainingArguments))
    parser.set_defaults(**CIFAR_TRAINING_DEFAULTS)
    cifar, model_args, args = parser.parse_args_into_dataclasses(args=argv)
    splits = build_cifar_splits(cifar, dataset_dict)
    counts = class_counts(splits["train"])
    logger.info(
        f"{cifar.dataset_name}-LT, imbalance factor {cifar.imbalance_factor:g}: {len(splits['train'])} training "
        f"images ({counts[0]} to {counts[-1]} per class), {len(splits['test'])} test images"
    )
    train_transform, eval_transform = make_transforms(model_args.image_size, augment=cifar.augment, seed=args.seed)
    trainer = SemScaleTrainer(
        model=build_model(model_args, len(counts), args.seed),
        args=args,
        train_dataset=splits["train"].with_transform(train_transform),
        eval_dataset=splits["test"].with_transform(eval_transform),
        class_counts=counts,
    )
    trainer.train()
    metrics = trainer.evaluate()
    keys = ["eval_accuracy", "eval_balanced_accuracy", "eval_acc_many", "eval_acc_medium", "eval_acc_few"]
    row = [f"{args.semscale_weighting} (p={args.semscale_power:g}, {args.semscale_base_loss})"]
    row += [f"{metrics[k]:.4f}" for k in keys]
    print(markdown_table(["method", "accuracy", "balanced", "many", "medium", "few"], [row]))
    results = {
        "cifar": asdict(cifar),
        "model": asdict(model_args),
        "semscale": {k: v for k, v in args.to_dict().items() if k.startswith("semscale_")},
        "class_counts": counts,
        "metrics": metrics,
    }
    path = Path(args.output_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    logger.info(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
