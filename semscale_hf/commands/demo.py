"""The main job (`semscale demo`, `make demo`): a small ViT trained with `SemScaleTrainer` on long-tailed digits.

The long-tailed training split is built from the embedded `sklearn` digits (exponential profile, imbalance factor and
seed as flags); the test split stays balanced. The same model is also trained with plain cross-entropy
(`--compare_baseline`, on by default) so that the printout shows what re-weighting changed, for better or worse.
Every `SemScaleTrainingArguments` field is a flag too, e.g. `--semscale_power -1` or `--num_train_epochs 40`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForImageClassification, HfArgumentParser, ViTConfig
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..data.images import load_long_tailed_digits, make_image_transform
from ..training.config import SemScaleTrainingArguments
from ..training.trainer import SemScaleTrainer


__all__ = ["DemoArguments", "main"]

# Defaults that make the demo train to a useful accuracy in about a minute on 2 CPU cores.
DEMO_TRAINING_DEFAULTS = {
    "output_dir": "outputs/demo",
    "num_train_epochs": 30,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    "learning_rate": 3e-3,
    "weight_decay": 0.05,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "save_strategy": "no",
    "eval_strategy": "no",
    "logging_steps": 20,
    "report_to": "none",
    "remove_unused_columns": False,  # the image transform needs the raw `image` column
    "use_cpu": not torch.cuda.is_available(),
    "semscale_warmup_epochs": 10,
    "semscale_refresh_steps": None,
}


@dataclass
class DemoArguments:
    """Data and model of the demo."""

    imbalance_factor: float = field(
        default=10.0, metadata={"help": "Largest over smallest class count of the train split."}
    )
    profile: str = field(default="exp", metadata={"help": "Long-tail profile.", "choices": ["exp", "step"]})
    data_seed_lt: int = field(
        default=0, metadata={"help": "Seed of the long-tailed subset and of the train/test split."}
    )
    image_size: int = field(default=16, metadata={"help": "Images are resized to this size (digits are 8x8)."})
    hidden_size: int = field(default=64, metadata={"help": "ViT hidden size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "ViT depth."})
    compare_baseline: bool = field(default=True, metadata={"help": "Also train with plain cross-entropy."})


def build_model(demo: DemoArguments, num_labels: int, seed: int) -> torch.nn.Module:
    config = ViTConfig(
        image_size=demo.image_size,
        patch_size=4,
        num_channels=3,
        hidden_size=demo.hidden_size,
        num_hidden_layers=demo.num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=2 * demo.hidden_size,
        num_labels=num_labels,
        id2label={i: str(i) for i in range(num_labels)},
        label2id={str(i): i for i in range(num_labels)},
    )
    torch.manual_seed(seed)
    return AutoModelForImageClassification.from_config(config)


class BarOnlyProgress(ProgressCallback):
    """Trainer's progress bars without the raw log dicts it writes under them (they stay in the log history)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return


def train_one(demo: DemoArguments, args: SemScaleTrainingArguments, splits) -> tuple[SemScaleTrainer, dict]:
    transform = make_image_transform(demo.image_size, num_channels=3)
    trainer = SemScaleTrainer(
        model=build_model(demo, 10, args.seed),
        args=args,
        train_dataset=splits["train"].with_transform(transform),
        eval_dataset=splits["test"].with_transform(transform),
    )
    # the console gets the progress bar and the summary at the end; every logged value (per-class scales and
    # weights too) goes to the log history and to `report_to`
    if not args.disable_tqdm:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(BarOnlyProgress)
    else:
        trainer.remove_callback(PrinterCallback)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_state()  # trainer_state.json: the log history (every refresh's per-class values) outlives the run
    return trainer, metrics


def build_parser() -> HfArgumentParser:
    """The parser of `semscale demo`: what it does, then its own options, the semscale ones, and the Trainer's."""
    parser = HfArgumentParser(
        (DemoArguments, SemScaleTrainingArguments),
        prog="semscale demo",
        usage="semscale demo [-h] [demo options] [semscale_* options] [any TrainingArguments option]",
        description=__doc__.split("\n\n", 1)[0].replace("\n", " ")
        + " Options take underscores or dashes (--num_train_epochs or --num-train-epochs).",
    )
    parser.set_defaults(**DEMO_TRAINING_DEFAULTS)
    demo_fields = {f.name for f in dataclasses.fields(DemoArguments)}
    groups = {
        "demo": parser.add_argument_group("demo options (data and model)"),
        "semscale": parser.add_argument_group("semantic-scale options (SemScaleTrainingArguments)"),
        "trainer": parser.add_argument_group("Trainer options (every TrainingArguments field; demo defaults shown)"),
    }
    for action in parser._actions:  # argparse has no public way to regroup the options HfArgumentParser added
        if action.dest == "help":
            continue
        key = (
            "demo" if action.dest in demo_fields else "semscale" if action.dest.startswith("semscale_") else "trainer"
        )
        for group in parser._action_groups:
            if action in group._group_actions:
                group._group_actions.remove(action)
        groups[key]._group_actions.append(action)
    return parser


def main(argv: list[str] | None = None) -> int:
    demo, args = build_parser().parse_args_into_dataclasses(args=argv)
    splits = load_long_tailed_digits(
        imbalance_factor=demo.imbalance_factor, profile=demo.profile, seed=demo.data_seed_lt
    )
    print(
        f"long-tailed digits: imbalance factor {demo.imbalance_factor:g} ({demo.profile}), "
        f"{len(splits['train'])} training images, {len(splits['test'])} balanced test images"
    )
    print(
        f"training a ViT (hidden {demo.hidden_size}, {demo.num_hidden_layers} layers) with "
        f"weighting={args.semscale_weighting}, power={args.semscale_power:g}, base loss={args.semscale_base_loss}"
    )
    trainer, metrics = train_one(demo, args, splits)
    trainer.save_model()  # model, config and semscale_state.safetensors, for `semscale analyze --model`
    results = {args.semscale_weighting: metrics}
    if demo.compare_baseline and args.semscale_weighting != "none":
        # a local comparison: never pushed (it would land in the model's Hub repo), saved for `semscale analyze`
        baseline_args = dataclasses.replace(
            args,
            semscale_weighting="none",
            output_dir=args.output_dir + "-baseline",
            push_to_hub=False,
            hub_model_id=None,
        )
        print("training the same model with plain cross-entropy for comparison")
        baseline, results["none (plain CE)"] = train_one(demo, baseline_args, splits)
        baseline.save_model()
    print(per_class_table(trainer, metrics))
    print(comparison_table(results))
    print(
        f"\nsaved to {args.output_dir} (every logged value of the run: trainer_state.json); per-class report and "
        f"plots: semscale analyze --model {args.output_dir} --dataset digits --imbalance-factor "
        f"{demo.imbalance_factor:g} --output-dir {args.output_dir}-report"
    )
    return 0


def per_class_table(trainer: SemScaleTrainer, metrics: dict[str, float]) -> str:
    rows = ["", "| class | train count | semantic scale | weight | test accuracy |", "|---:|---:|---:|---:|---:|"]
    for c, count in enumerate(trainer.class_counts):
        scale = float(trainer.semantic_scales[c])
        accuracy = metrics.get(f"eval_acc_class_{c}", math.nan)
        rows.append(f"| {c} | {count} | {scale:.3f} | {float(trainer.class_weights[c]):.3f} | {accuracy:.3f} |")
    return "\n".join(rows)


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    keys = ["eval_accuracy", "eval_balanced_accuracy", "eval_acc_many", "eval_acc_medium", "eval_acc_few"]
    rows = ["", "| weighting | accuracy | balanced | many | medium | few |", "|---|---:|---:|---:|---:|---:|"]
    for name, metrics in results.items():
        values = " | ".join("n/a" if math.isnan(metrics.get(k, math.nan)) else f"{metrics[k]:.3f}" for k in keys)
        rows.append(f"| {name} | {values} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
