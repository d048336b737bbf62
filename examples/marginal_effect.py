# /// script
# requires-python = ">=3.10"
# dependencies = ["semscale-hf", "matplotlib>=3.7"]
# ///
"""The marginal effect: semantic scale against the number of samples of a class, with a fitted saturating curve.

A small ViT is trained with plain cross-entropy on the sample-balanced digits train split (the same number of images
per class). For each class and each feature source, random subsets of m = 2 ... n features are drawn (`--repeats` per
size), their semantic scale S(m) is measured, and `S(m) ~ a (1 - exp(-m / tau))` is fitted
(`semscale_hf.marginal_effect`). Feature sources (`--sources`):

* `features`: the trained model's penultimate features (the head's input), eval mode;
* `untrained`: the same architecture with its random initial weights (is the saturation learned?);
* `pixels`: the raw 8x8 pixels (64 dimensions).

The effective number of Cui et al. (2019), `E(n) = (1 - beta^n) / (1 - beta)`, is the same curve shape with
`tau = -1 / ln(beta)`. The script reports the beta that matches each fitted tau, and how well the effective-number
shape with a fixed beta (`--effective_number_betas`) fits the measured S(m) (the best scale factor, its R^2).

Usage (about 3 minutes on 2 busy CPU cores):

    python examples/marginal_effect.py --seed 0 --results_dir results/marginal_effect

Quick check:

    python examples/marginal_effect.py --num_train_epochs 1 --repeats 2 --results_dir /tmp/marginal
"""

from __future__ import annotations

import dataclasses
import json
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
    build_model,
    digits_to_tensors,
    extract_features,
    markdown_table,
    mean_std,
    method_overrides,
    save_figure,
    study_training_defaults,
    train_and_evaluate,
)
from transformers import HfArgumentParser

from semscale_hf import SemScaleTrainingArguments, marginal_effect
from semscale_hf.core import parse_alpha
from semscale_hf.data import dataset_to_tensors, load_long_tailed_digits


logger = logging.getLogger("marginal_effect")

SOURCES = ("features", "untrained", "pixels")


@dataclass
class MarginalArguments:
    """What to measure and where the results go."""

    sources: list[str] = field(
        default_factory=lambda: list(SOURCES), metadata={"help": f"Feature sources, from {list(SOURCES)}."}
    )
    classes: list[int] | None = field(default=None, metadata={"help": "Classes to measure (default: all)."})
    repeats: int = field(default=10, metadata={"help": "Random subsets per size."})
    effective_number_betas: list[float] = field(
        default_factory=lambda: [0.9999, 0.99], metadata={"help": "betas of the effective-number curves compared."}
    )
    results_dir: str = field(
        default="results/marginal_effect", metadata={"help": "Folder of marginal_effect.{md,json,png}."}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)."})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    parser = HfArgumentParser((MarginalArguments, ModelArguments, SemScaleTrainingArguments))
    parser.set_defaults(**study_training_defaults(output_dir="outputs/marginal_effect"))
    marginal, model_args, base_args = parser.parse_args_into_dataclasses(args=argv)
    unknown = [s for s in marginal.sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {list(SOURCES)}")
    if marginal.num_threads is not None:
        torch.set_num_threads(marginal.num_threads)

    seed = base_args.seed
    splits = load_long_tailed_digits(imbalance_factor=1.0, seed=seed)
    train, test, counts = digits_to_tensors(splits, model_args.image_size)
    num_classes = len(counts)
    classes = list(range(num_classes)) if marginal.classes is None else marginal.classes
    features_by_source = {}
    if "untrained" in marginal.sources:
        features_by_source["untrained"] = extract_features(
            build_model(model_args, num_classes, seed), train.pixel_values
        )[0]
    if "features" in marginal.sources:
        overrides = method_overrides("ce", num_train_epochs=base_args.num_train_epochs, deferred_fraction=0.0)
        args = dataclasses.replace(base_args, **overrides)
        logger.info(f"training the ViT on {len(train)} balanced digits ({counts[0]} per class)")
        trainer, metrics = train_and_evaluate(model_args, args, train, test, counts)
        logger.info(f"test accuracy {metrics['eval_accuracy']:.3f}")
        features_by_source["features"] = extract_features(trainer.model, train.pixel_values)[0]
    if "pixels" in marginal.sources:
        pixels, _ = dataset_to_tensors(splits["train"], 8, num_channels=1)
        features_by_source["pixels"] = pixels.flatten(1)

    results: dict[str, list[dict[str, Any]]] = {}
    for source in marginal.sources:
        features = features_by_source[source]
        results[source] = []
        for c in classes:
            effect = marginal_effect(
                features[train.labels == c],
                repeats=marginal.repeats,
                seed=seed,
                alpha=parse_alpha(base_args.semscale_alpha),
            )
            results[source].append(describe(c, effect, marginal.effective_number_betas))
        logger.info(f"{source}: median tau {statistics.median(r['tau'] for r in results[source]):.1f} samples")

    results_dir = Path(marginal.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    report = summarise(results, marginal, model_args, base_args, counts)
    (results_dir / "marginal_effect.md").write_text(report, encoding="utf-8")
    payload = {"seed": seed, "class_counts": counts, "repeats": marginal.repeats, "results": results}
    (results_dir / "marginal_effect.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    plot_path = plot_curves(results, marginal.effective_number_betas, results_dir / "marginal_effect.png")
    print(report)
    logger.info(f"wrote {results_dir}/marginal_effect.md, .json" + (f" and {plot_path}" if plot_path else ""))
    return 0


def describe(label: int, effect: Any, betas: list[float]) -> dict[str, Any]:
    """JSON-ready summary of one class's curve, with the fixed-beta effective-number fits."""
    sizes = torch.tensor(effect.sizes, dtype=torch.float64)
    fit = effect.fit
    fixed = {}
    for beta in betas:
        # best scale factor for the effective-number shape 1 - beta^m (fixed beta), and its R^2
        basis = -torch.expm1(sizes * math.log(beta))
        factor = float((basis * effect.mean).sum() / (basis * basis).sum())
        residual = float(((effect.mean - factor * basis) ** 2).sum())
        total = float(((effect.mean - effect.mean.mean()) ** 2).sum())
        fixed[str(beta)] = 1.0 - residual / total if total > 0 else math.nan
    return {
        "class": label,
        "sizes": effect.sizes,
        "mean": effect.mean.tolist(),
        "std": effect.std.tolist(),
        "asymptote": fit.asymptote,
        "tau": fit.tau,
        "r_squared": fit.r_squared,
        "m95": fit.m95,
        "saturated": effect.saturated,
        "matching_beta": math.exp(-1.0 / fit.tau),
        "effective_number_r_squared": fixed,
    }


def summarise(
    results: dict[str, list[dict[str, Any]]],
    marginal: MarginalArguments,
    model_args: ModelArguments,
    args: SemScaleTrainingArguments,
    counts: list[int],
) -> str:
    lines = [
        "# Marginal effect of semantic scale on the digits",
        "",
        f"Sample-balanced digits train split ({counts[0]} images per class, seed {args.seed}); ViT hidden "
        f"{model_args.hidden_size}, {model_args.num_hidden_layers} layers, {args.num_train_epochs:g} epochs of plain "
        f"CE; alpha = {args.semscale_alpha}; {marginal.repeats} random subsets per size. Fit: S(m) ~ a (1 - exp(-m / "
        "tau)); m95 = tau ln 20 is where 95% of a is reached; beta* = exp(-1/tau) is the effective-number beta "
        "with the same shape. R² E(β): the effective-number shape 1 - β^m with fixed β, best scale factor.",
        "",
        "## Summary per feature source (median over classes, [min, max])",
        "",
    ]
    betas = [str(b) for b in marginal.effective_number_betas]
    headers = ["source", "S(n)", "tau", "m95", "saturated", "R² fit", "beta*"] + [f"R² E({b})" for b in betas]
    rows = []
    for source, per_class in results.items():
        full = [r["mean"][-1] for r in per_class]
        row = [
            source,
            _median_range(full, 1),
            _median_range([r["tau"] for r in per_class], 1),
            _median_range([r["m95"] for r in per_class], 0),
            f"{sum(r['saturated'] for r in per_class)}/{len(per_class)}",
            _median_range([r["r_squared"] for r in per_class], 3),
            _median_range([r["matching_beta"] for r in per_class], 3),
        ]
        row += [_median_range([r["effective_number_r_squared"][b] for r in per_class], 3) for b in betas]
        rows.append(row)
    lines.append(markdown_table(headers, rows))
    lines += ["", "## Per class", ""]
    rows = []
    for source, per_class in results.items():
        for r in per_class:
            rows.append(
                [
                    source,
                    str(r["class"]),
                    f"{r['mean'][-1]:.2f}",
                    f"{r['asymptote']:.2f}",
                    f"{r['tau']:.1f}",
                    f"{r['m95']:.0f}",
                    "yes" if r["saturated"] else "no",
                    f"{r['r_squared']:.3f}",
                    f"{r['matching_beta']:.3f}",
                ]
                + [f"{r['effective_number_r_squared'][b]:.3f}" for b in betas]
            )
    headers = ["source", "class", "S(n)", "a", "tau", "m95", "saturated", "R² fit", "beta*"]
    headers += [f"R² E({b})" for b in betas]
    lines.append(markdown_table(headers, rows, align="llrrrrlrr" + "r" * len(betas)))
    lines.append("")
    lines.append(
        "Spread over repeats at the middle size (std of S): "
        + ", ".join(
            f"{source} {mean_std(r['std'][len(r['sizes']) // 2] for r in per_class)}"
            for source, per_class in results.items()
        )
        + "."
    )
    lines.append("")
    return "\n".join(lines)


def _median_range(values: list[float], digits: int) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    return f"{statistics.median(finite):.{digits}f} [{min(finite):.{digits}f}, {max(finite):.{digits}f}]"


def plot_curves(results: dict[str, list[dict[str, Any]]], betas: list[float], path: Path) -> Path | None:
    """One panel per source (per-class means ± std and fitted curves), and one of normalised curves against E(n)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    panels = len(results) + 1
    figure, axes = plt.subplots(1, panels, figsize=(4.0 * panels, 3.6), layout="constrained")
    for axis, (source, per_class) in zip(axes, results.items()):
        for index, r in enumerate(per_class):
            color = plt.cm.tab10(index % 10)
            axis.errorbar(r["sizes"], r["mean"], yerr=r["std"], fmt="o", ms=2.5, color=color, lw=0.8)
            grid = torch.linspace(1, r["sizes"][-1], 100, dtype=torch.float64)
            curve = r["asymptote"] * -torch.expm1(-grid / r["tau"])
            axis.plot(grid, curve, color=color, lw=0.8, label=str(r["class"]))
        axis.set_title(f"{source}: S(m) and fits", fontsize=9)
        axis.set_xlabel("samples m")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("semantic scale (bits)")
    axes[0].legend(fontsize=6, ncol=2, title="class", title_fontsize=6)
    axis = axes[-1]
    largest = max(r["sizes"][-1] for per_class in results.values() for r in per_class)
    grid = torch.linspace(1, largest, 100, dtype=torch.float64)
    for index, (source, per_class) in enumerate(results.items()):
        sizes = per_class[0]["sizes"]
        normalised = [statistics.fmean(r["mean"][i] / r["mean"][-1] for r in per_class) for i in range(len(sizes))]
        axis.plot(sizes, normalised, "o-", ms=3, color=plt.cm.Dark2(index), label=f"S(m)/S(n), {source}")
    for beta in betas:
        effective = -torch.expm1(grid * math.log(beta))
        axis.plot(grid, effective / effective[-1], "--", color="gray", lw=1, label=f"E(m)/E(n), β={beta}")
    axis.set_title("normalised: scale vs effective number", fontsize=9)
    axis.set_xlabel("samples m")
    axis.legend(fontsize=6)
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


if __name__ == "__main__":
    sys.exit(main())
