# /// script
# requires-python = ">=3.10"
# dependencies = ["semscale-hf", "matplotlib>=3.7"]
# ///
"""Bias on sample-balanced data: does per-class semantic scale track per-class accuracy when counts cannot?

For each seed, a small ViT is trained with plain cross-entropy on digits whose train split has exactly the same
number of images in every class (`--imbalance_factor 1`), and evaluated per class on the balanced test split. Each
class's semantic scale is measured three ways:

* `pool`: what `SemScaleTrainer` itself measured from its feature pool at the end of training (the scale the method
  would weight by);
* `features`: the trained model's penultimate features of the train split, in eval mode;
* `pixels`: the raw 8x8 pixels of the train split (64 dimensions), independent of any model.

The Pearson and Spearman correlations of each with the per-class test accuracy are reported per seed and as
mean ± std over seeds, next to those of the counts and of the effective number (undefined on balanced data: constant).
A different `--imbalance_factor` (e.g. 10) runs the same analysis on long-tailed data, where counts do vary.

Usage (5 seeds, about 10 minutes on 2 busy CPU cores):

    python examples/balanced_bias.py --seeds 0 1 2 3 4 --results_dir results/balanced_bias

Quick check:

    python examples/balanced_bias.py --seeds 0 --num_train_epochs 1 --results_dir /tmp/bias
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import (
    ModelArguments,
    append_jsonl,
    digits_to_tensors,
    extract_features,
    markdown_table,
    mean_std,
    method_overrides,
    read_jsonl,
    save_figure,
    settings_id,
    study_training_defaults,
    train_and_evaluate,
)
from transformers import HfArgumentParser

from semscale_hf import (
    SemScaleTrainingArguments,
    class_semantic_scales,
    pearson_correlation,
    scale_imbalance,
    spearman_correlation,
)
from semscale_hf.core import effective_number, parse_alpha
from semscale_hf.data import dataset_to_tensors, load_long_tailed_digits


logger = logging.getLogger("balanced_bias")

SOURCES = ("pool", "features", "pixels")
COMPARISONS = ("count", "effective number")


@dataclass
class BiasArguments:
    """Seeds, data and output of the analysis."""

    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        metadata={"help": "Seeds: each sets the train/test split, the balanced subset and the model init."},
    )
    imbalance_factor: float = field(
        default=1.0, metadata={"help": "1 gives a sample-balanced train split; larger values a long tail."}
    )
    results_dir: str = field(
        default="results/balanced_bias", metadata={"help": "Folder of results.jsonl, tables.md and the plot."}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)."})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    parser = HfArgumentParser((BiasArguments, ModelArguments, SemScaleTrainingArguments))
    parser.set_defaults(**study_training_defaults(output_dir="outputs/balanced_bias"))
    bias, model_args, base_args = parser.parse_args_into_dataclasses(args=argv)
    if bias.num_threads is not None:
        torch.set_num_threads(bias.num_threads)
    results_dir = Path(bias.results_dir)
    results_path = results_dir / "results.jsonl"
    settings = {
        "imbalance_factor": bias.imbalance_factor,
        "model": dataclasses.asdict(model_args),
        "epochs": base_args.num_train_epochs,
        "max_steps": base_args.max_steps,
        "batch": base_args.per_device_train_batch_size,
        "lr": base_args.learning_rate,
        "alpha": base_args.semscale_alpha,
    }
    sid = settings_id(settings)
    done = {r["seed"] for r in read_jsonl(results_path) if r.get("settings_id") == sid}
    for seed in bias.seeds:
        if seed in done:
            logger.info(f"seed {seed}: already in {results_path}, skipped")
            continue
        record = run_seed(seed, bias, model_args, base_args)
        record["settings_id"], record["settings"] = sid, settings
        append_jsonl(results_path, record)
        logger.info(
            f"seed {seed}: balanced accuracy {record['balanced_accuracy']:.3f}, Pearson(scale, accuracy) "
            + ", ".join(f"{s} {record['pearson'][s]:+.2f}" for s in SOURCES)
        )
    records = [r for r in read_jsonl(results_path) if r.get("settings_id") == sid and r["seed"] in bias.seeds]
    tables = summarise(records, bias, settings)
    (results_dir / "tables.md").write_text(tables, encoding="utf-8")
    plot_path = plot_scale_vs_accuracy(records, results_dir / "scale_vs_accuracy.png")
    print(tables)
    logger.info(f"wrote {results_dir / 'tables.md'}" + (f" and {plot_path}" if plot_path else ""))
    return 0


def run_seed(
    seed: int, bias: BiasArguments, model_args: ModelArguments, base_args: SemScaleTrainingArguments
) -> dict[str, Any]:
    """Trains plain CE with one seed; returns per-class accuracy, scales from three sources and correlations."""
    splits = load_long_tailed_digits(imbalance_factor=bias.imbalance_factor, seed=seed)
    train, test, counts = digits_to_tensors(splits, model_args.image_size)
    overrides = method_overrides("ce", num_train_epochs=base_args.num_train_epochs, deferred_fraction=0.0)
    args = dataclasses.replace(base_args, seed=seed, output_dir=f"{base_args.output_dir}/seed{seed}", **overrides)
    trainer, metrics = train_and_evaluate(model_args, args, train, test, counts)
    num_classes = len(counts)
    accuracy = torch.tensor([metrics[f"eval_acc_class_{c}"] for c in range(num_classes)], dtype=torch.float64)

    features, _ = extract_features(trainer.model, train.pixel_values)
    pixels, pixel_labels = dataset_to_tensors(splits["train"], 8, num_channels=1)
    alpha = parse_alpha(args.semscale_alpha)
    scales = {
        "pool": trainer.semantic_scales,
        "features": class_semantic_scales(features, train.labels, num_classes, alpha=alpha),
        "pixels": class_semantic_scales(pixels.flatten(1), pixel_labels, num_classes, alpha=alpha),
    }
    counts_tensor = torch.tensor(counts, dtype=torch.float64)
    compared = {"count": counts_tensor, "effective number": effective_number(counts_tensor)}
    imbalance = scale_imbalance(scales["pool"])
    return {
        "seed": seed,
        "class_counts": counts,
        "accuracy": metrics["eval_accuracy"],
        "balanced_accuracy": metrics["eval_balanced_accuracy"],
        "per_class_accuracy": accuracy.tolist(),
        "scales": {name: value.tolist() for name, value in scales.items()},
        "pearson": {name: pearson_correlation(value, accuracy) for name, value in {**scales, **compared}.items()},
        "spearman": {name: spearman_correlation(value, accuracy) for name, value in {**scales, **compared}.items()},
        "pool_max_min_ratio": imbalance.max_min_ratio,
        "pool_coefficient_of_variation": imbalance.coefficient_of_variation,
        "train_seconds": metrics["train_seconds"],
    }


def summarise(records: list[dict[str, Any]], bias: BiasArguments, settings: dict[str, Any]) -> str:
    """Markdown tables: correlations (per seed and mean ± std) and the per-class picture averaged over seeds."""
    records = sorted(records, key=lambda r: r["seed"])
    if not records:
        return "no results\n"
    counts = records[0]["class_counts"]
    balanced = len(set(counts)) == 1
    model = settings["model"]
    lines = [
        "# Semantic scale and per-class accuracy"
        + (" on sample-balanced digits" if balanced else f" on long-tailed digits (IF {bias.imbalance_factor:g})"),
        "",
        f"Plain cross-entropy, ViT hidden {model['hidden_size']}, {model['num_hidden_layers']} layers, "
        f"{settings['epochs']:g} epochs; train counts {counts} (seed {records[0]['seed']}); seeds "
        f"{[r['seed'] for r in records]}. Balanced accuracy {mean_std(r['balanced_accuracy'] for r in records)}. "
        "Correlation over the classes of each seed; last rows: mean ± std over seeds.",
        "",
    ]
    sources = list(SOURCES) + list(COMPARISONS)
    headers = ["seed"] + [f"{kind} {s}" for s in sources for kind in ("r", "ρ")]
    rows = []
    for record in records:
        row = [str(record["seed"])]
        for source in sources:
            row += [_fmt(record["pearson"][source]), _fmt(record["spearman"][source])]
        rows.append(row)
    for label, fn in (("mean ± std", mean_std),):
        row = [label]
        for source in sources:
            row += [fn((r["pearson"][source] for r in records), 2), fn((r["spearman"][source] for r in records), 2)]
        rows.append(row)
    lines.append(markdown_table(headers, rows))
    lines += [
        "",
        "r: Pearson, ρ: Spearman. nan: undefined (a constant input, as counts and effective number are when every "
        "class has the same count).",
        "",
        "## Per class, mean ± std over seeds",
        "",
    ]
    rows = []
    for c in range(len(counts)):
        row = [str(c), str(counts[c])]
        row += [mean_std((r["scales"][s][c] for r in records), 2) for s in SOURCES]
        row.append(mean_std((r["per_class_accuracy"][c] for r in records), 3))
        rows.append(row)
    headers = ["class", "train count", "scale (pool)", "scale (features)", "scale (pixels)", "test accuracy"]
    lines.append(markdown_table(headers, rows))
    ratios = [r["pool_max_min_ratio"] for r in records]
    lines += ["", f"Max/min ratio of the pool scales: {mean_std(ratios, 2)}.", ""]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def plot_scale_vs_accuracy(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Per-class accuracy against scale, one panel per scale source, one colour per seed with its least-squares
    line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    figure, axes = plt.subplots(1, len(SOURCES), figsize=(4.2 * len(SOURCES), 3.6), layout="constrained")
    for axis, source in zip(axes, SOURCES):
        for index, record in enumerate(sorted(records, key=lambda r: r["seed"])):
            xs, ys = record["scales"][source], record["per_class_accuracy"]
            pairs = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
            if len(pairs) < 2:
                continue
            color = plt.cm.tab10(index % 10)
            axis.scatter(*zip(*pairs), s=14, color=color, label=f"seed {record['seed']}")
            for c, (x, y) in enumerate(zip(xs, ys)):
                if math.isfinite(x) and math.isfinite(y):
                    axis.annotate(str(c), (x, y), fontsize=6, color=color, xytext=(2, 2), textcoords="offset points")
            slope, intercept = _line(pairs)
            low, high = min(p[0] for p in pairs), max(p[0] for p in pairs)
            axis.plot([low, high], [intercept + slope * low, intercept + slope * high], color=color, lw=0.8)
        pearson = mean_std((r["pearson"][source] for r in records), 2)
        axis.set_title(f"{source}: Pearson {pearson}", fontsize=9)
        axis.set_xlabel("semantic scale (bits)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("per-class test accuracy")
    axes[-1].legend(fontsize=7)
    return save_figure(figure, path)


def _line(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var > 0 else 0.0
    return slope, my - slope * mx


if __name__ == "__main__":
    sys.exit(main())
