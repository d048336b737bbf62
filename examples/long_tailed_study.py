# /// script
# requires-python = ">=3.10"
# dependencies = ["semscale-hf", "matplotlib>=3.7"]
# ///
"""Long-tailed training study on the embedded digits: semantic-scale weighting (both directions) against baselines.

For every imbalance factor, seed and method, a small ViT is trained from scratch on a long-tailed digits train split
(exponential profile; the test split stays balanced) and evaluated: overall, balanced (class-averaged) and
many/medium/few-shot accuracy. Each seed draws its own train/test split and long-tailed subset and initialises the
model with the same weights for every method, so methods are compared on paired runs.

Methods (`--methods`, see `METHODS` in common.py): `ce`; `inverse_frequency` and `class_balanced` (effective number,
Cui et al. 2019), both weighted from the first step; `ldam_drw` (LDAM + deferred effective-number weights, Cao et al.
2019); `semscale_{ce,ldam,focal}_p{+1,-1}`: semantic-scale weights `w ~ S^(-power)` after the warm-up, with the base
loss named; `focal` (unweighted focal loss, the reference of the focal variants). Deferred methods warm up for
`--deferred_fraction` of the epochs.

Every finished run is appended to `<results_dir>/results.jsonl` at once; a rerun skips the (method, imbalance factor,
seed) entries already there with the same settings, so an interrupted study resumes where it stopped. The tables
(`tables.md`, mean ± std over seeds) and a plot are written at the end, or alone with `--aggregate_only`.

Usage (the full study, about 35 minutes on 2 busy CPU cores, in the background):

    nohup python examples/long_tailed_study.py --num_workers 2 > results/long_tailed_study/study.log 2>&1 &

Quick check (one seed, two methods, two epochs):

    python examples/long_tailed_study.py --seeds 0 --methods ce semscale_ce_p+1 --imbalance_factors 10 \
        --num_train_epochs 2 --results_dir /tmp/study
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import (
    METHODS,
    ModelArguments,
    append_jsonl,
    digits_to_tensors,
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

from semscale_hf import SemScaleTrainingArguments, pearson_correlation, spearman_correlation
from semscale_hf.core.weights import effective_number
from semscale_hf.data import load_long_tailed_digits


logger = logging.getLogger("long_tailed_study")

DEFAULT_METHODS = [
    "ce",
    "inverse_frequency",
    "class_balanced",
    "ldam_drw",
    "semscale_ce_p+1",
    "semscale_ce_p-1",
    "semscale_ldam_p+1",
    "semscale_ldam_p-1",
]
# Not in the default grid (to keep the study within ~40 minutes on 2 busy cores); add them with --methods.
FOCAL_METHODS = ["focal", "semscale_focal_p+1", "semscale_focal_p-1"]
METRICS = ("accuracy", "balanced_accuracy", "acc_many", "acc_medium", "acc_few")
# Direction comparisons: (base loss, the power +1 method, the power -1 method, the unweighted or count-based reference)
DIRECTIONS = (
    ("ce", "semscale_ce_p+1", "semscale_ce_p-1", "ce"),
    ("ldam", "semscale_ldam_p+1", "semscale_ldam_p-1", "ldam_drw"),
    ("focal", "semscale_focal_p+1", "semscale_focal_p-1", "focal"),
)


@dataclass
class StudyArguments:
    """What to run and where the results go."""

    imbalance_factors: list[float] = field(
        default_factory=lambda: [10.0, 50.0], metadata={"help": "Head-to-tail ratios of the train split."}
    )
    profile: str = field(default="exp", metadata={"help": "Long-tail profile.", "choices": ["exp", "step"]})
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        metadata={"help": "Seeds: each one sets the data split, the long-tailed subset and the model init."},
    )
    methods: list[str] = field(
        default_factory=lambda: list(DEFAULT_METHODS), metadata={"help": f"Methods, from {sorted(METHODS)}."}
    )
    deferred_fraction: float = field(
        default=1 / 3, metadata={"help": "Warm-up of the deferred methods, as a fraction of the epochs."}
    )
    results_dir: str = field(
        default="results/long_tailed_study", metadata={"help": "Folder of results.jsonl, tables.md and the plot."}
    )
    num_workers: int = field(default=1, metadata={"help": "Runs trained in parallel (processes)."})
    threads_per_worker: int = field(default=1, metadata={"help": "torch threads of each worker."})
    aggregate_only: bool = field(default=False, metadata={"help": "Only rebuild the tables from results.jsonl."})
    reference_method: str = field(default="ce", metadata={"help": "Method the paired differences refer to."})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    parser = HfArgumentParser((StudyArguments, ModelArguments, SemScaleTrainingArguments))
    parser.set_defaults(**study_training_defaults(output_dir="outputs/long_tailed_study"))
    study, model_args, args = parser.parse_args_into_dataclasses(args=argv)
    unknown = [m for m in study.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    if study.num_workers < 1 or study.threads_per_worker < 1:
        raise ValueError("num_workers and threads_per_worker must be at least 1")
    results_dir = Path(study.results_dir)
    results_path = results_dir / "results.jsonl"
    settings = study_settings(study, model_args, args)
    if not study.aggregate_only:
        run_study(study, model_args, args, settings, results_path)
    records = [r for r in read_jsonl(results_path) if r.get("settings_id") == settings_id(settings)]
    if not records:
        logger.warning(f"no results with the current settings in {results_path}")
        return 1
    tables = aggregate(records, study, settings)
    (results_dir / "tables.md").write_text(tables, encoding="utf-8")
    plot_path = plot_balanced_accuracy(records, study, results_dir / "balanced_accuracy.png")
    print(tables)
    logger.info(f"wrote {results_dir / 'tables.md'}" + (f" and {plot_path}" if plot_path else ""))
    return 0


# ------------------------------------------------------------------------------------------------------------- runs
def study_settings(study: StudyArguments, model_args: ModelArguments, args: SemScaleTrainingArguments) -> dict:
    """Everything except the (method, imbalance factor, seed) grid that changes a run's result."""
    keys = (
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "learning_rate",
        "weight_decay",
        "lr_scheduler_type",
        "warmup_steps",
        "semscale_refresh_steps",
        "semscale_alpha",
        "semscale_focal_gamma",
        "semscale_ldam_max_margin",
        "semscale_ldam_scale",
    )
    return {
        "profile": study.profile,
        "deferred_fraction": round(study.deferred_fraction, 6),
        "model": dataclasses.asdict(model_args),
        "training": {k: getattr(args, k) for k in keys},
    }


def run_study(
    study: StudyArguments,
    model_args: ModelArguments,
    args: SemScaleTrainingArguments,
    settings: dict,
    results_path: Path,
) -> None:
    sid = settings_id(settings)
    done = {
        (r["method"], float(r["imbalance_factor"]), int(r["seed"]))
        for r in read_jsonl(results_path)
        if r.get("settings_id") == sid
    }
    # seeds outermost: a study stopped early still holds complete seeds for every method
    todo = [
        (method, float(factor), seed)
        for seed in study.seeds
        for factor in study.imbalance_factors
        for method in study.methods
        if (method, float(factor), seed) not in done
    ]
    logger.info(
        f"settings {sid}: {len(done)} runs already in {results_path}, {len(todo)} to go, {study.num_workers} worker(s)"
    )
    jobs = [
        {
            "method": method,
            "imbalance_factor": factor,
            "seed": seed,
            "profile": study.profile,
            "deferred_fraction": study.deferred_fraction,
            "model_args": dataclasses.asdict(model_args),
            "args": args.to_dict(),
            "threads": study.threads_per_worker,
        }
        for method, factor, seed in todo
    ]
    start = time.perf_counter()

    def finish(index: int, record: dict[str, Any]) -> None:
        record["settings_id"], record["settings"] = sid, settings
        append_jsonl(results_path, record)
        elapsed = time.perf_counter() - start
        logger.info(
            f"[{index}/{len(jobs)}] {record['method']:<20} IF {record['imbalance_factor']:g} seed {record['seed']}: "
            f"acc {record['accuracy']:.3f} balanced {record['balanced_accuracy']:.3f} "
            f"({record['train_seconds']:.0f} s; {elapsed / 60:.1f} min elapsed)"
        )

    if study.num_workers == 1:
        for index, job in enumerate(jobs, 1):
            finish(index, run_one(job))
        return
    # spawn: a forked child of a process that already ran torch ops can deadlock in OpenMP
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=study.num_workers, mp_context=context) as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        for index, future in enumerate(as_completed(futures), 1):
            finish(index, future.result())


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Trains and evaluates one (method, imbalance factor, seed); returns the JSON record of the run."""
    torch.set_num_threads(job["threads"])
    logging.getLogger("transformers").setLevel(logging.ERROR)
    model_args = ModelArguments(**job["model_args"])
    splits = load_long_tailed_digits(
        imbalance_factor=job["imbalance_factor"], profile=job["profile"], seed=job["seed"]
    )
    train, test, counts = digits_to_tensors(splits, model_args.image_size)
    base = _training_arguments(job["args"])
    overrides = method_overrides(
        job["method"], num_train_epochs=base.num_train_epochs, deferred_fraction=job["deferred_fraction"]
    )
    output_dir = f"{base.output_dir}/{job['method']}-if{job['imbalance_factor']:g}-seed{job['seed']}"
    args = dataclasses.replace(base, seed=job["seed"], output_dir=output_dir, **overrides)
    trainer, metrics = train_and_evaluate(model_args, args, train, test, counts)
    return {
        "method": job["method"],
        "imbalance_factor": job["imbalance_factor"],
        "seed": job["seed"],
        **{name: metrics[f"eval_{name}"] for name in METRICS},
        "per_class_accuracy": [metrics[f"eval_acc_class_{c}"] for c in range(len(counts))],
        "class_counts": counts,
        "semantic_scales": trainer.semantic_scales.tolist(),
        "class_weights": trainer.class_weights.tolist(),
        "train_seconds": metrics["train_seconds"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _training_arguments(values: dict[str, Any]) -> SemScaleTrainingArguments:
    """Rebuilds the arguments in a worker from `to_dict()` (fields that `__init__` does not take are dropped)."""
    names = {f.name for f in dataclasses.fields(SemScaleTrainingArguments) if f.init}
    return SemScaleTrainingArguments(**{k: v for k, v in values.items() if k in names})


# ------------------------------------------------------------------------------------------------------ aggregation
def _by_key(records: list[dict]) -> dict[tuple[str, float, int], dict]:
    return {(r["method"], float(r["imbalance_factor"]), int(r["seed"])): r for r in records}


def _ordered_methods(runs: dict, study: StudyArguments) -> list[str]:
    """The requested methods that have runs, in the requested order, then the other methods found in the file."""
    methods = [m for m in study.methods if any(k[0] == m for k in runs)]
    return methods + [m for m in METHODS if m not in methods and any(k[0] == m for k in runs)]


def aggregate(records: list[dict], study: StudyArguments, settings: dict) -> str:
    """Markdown: settings, one results table per imbalance factor, direction comparisons, correlations."""
    runs = _by_key(records)
    factors = sorted({f for _, f, _ in runs})
    methods = _ordered_methods(runs, study)
    training, model = settings["training"], settings["model"]
    schedule = getattr(training["lr_scheduler_type"], "value", training["lr_scheduler_type"])
    refresh = "epoch" if training["semscale_refresh_steps"] is None else f"{training['semscale_refresh_steps']} steps"
    lines = [
        "# Long-tailed digits study",
        "",
        f"Settings `{settings_id(settings)}`: ViT hidden {model['hidden_size']}, {model['num_hidden_layers']} layers, "
        f"image {model['image_size']}, patch {model['patch_size']}; {training['num_train_epochs']:g} epochs, batch "
        f"{training['per_device_train_batch_size']}, AdamW lr {training['learning_rate']:g}, weight decay "
        f"{training['weight_decay']:g}, {schedule} "
        f"schedule; profile `{settings['profile']}`; "
        f"deferred methods warm up for {settings['deferred_fraction']:.3g} of the epochs; weights refreshed every "
        f"{refresh}. "
        "Test split balanced (53 to 55 images per class). Mean ± sample std over seeds; Δ is the paired difference to "
        f"`{study.reference_method}` (same seed: same data and initial weights), W/L the seeds where the method was "
        "better/worse.",
    ]
    for factor in factors:
        seeds = sorted({s for m, f, s in runs if f == factor})
        counts = next(r["class_counts"] for k, r in runs.items() if k[1] == factor)
        lines += [
            "",
            f"## Imbalance factor {factor:g} (train counts {counts}, seed {seeds[0]}; seeds {seeds})",
            "",
        ]
        rows = []
        for method in methods:
            group = [runs[(method, factor, s)] for s in seeds if (method, factor, s) in runs]
            if not group:
                continue
            cells = [f"`{method}`", str(len(group))] + [mean_std(r[m] for r in group) for m in METRICS]
            cells += _paired_cells(runs, method, study.reference_method, factor, seeds, "balanced_accuracy")
            rows.append(cells)
        headers = ["method", "n", "accuracy", "balanced", "many", "medium", "few", "Δ balanced", "W/L"]
        lines.append(markdown_table(headers, rows, align="lrrrrrrrr"))
    lines += ["", "## Direction of the power: p = +1 minus p = -1 (paired, balanced accuracy)", ""]
    rows = []
    for factor in factors:
        seeds = sorted({s for m, f, s in runs if f == factor})
        for base, plus, minus, reference in DIRECTIONS:
            if not any((plus, factor, s) in runs for s in seeds):
                continue
            cells = [f"{factor:g}", base]
            cells += _paired_cells(runs, plus, minus, factor, seeds, "balanced_accuracy")
            cells += _paired_cells(runs, plus, reference, factor, seeds, "balanced_accuracy")
            cells += _paired_cells(runs, minus, reference, factor, seeds, "balanced_accuracy")
            cells += _paired_cells(runs, plus, minus, factor, seeds, "acc_few")
            rows.append(cells)
    headers = [
        "IF",
        "base loss",
        "(+1) − (−1)",
        "W/L",
        "(+1) − ref",
        "W/L",
        "(−1) − ref",
        "W/L",
        "few: (+1) − (−1)",
        "W/L",
    ]
    lines.append(markdown_table(headers, rows, align="llrrrrrrrr"))
    lines.append("")
    lines.append("ref: `ce` for the CE variants, `ldam_drw` for LDAM, `focal` for focal.")
    lines += ["", "## Which per-class quantity tracks per-class test accuracy? (runs of `ce`)", ""]
    lines.append(
        "Scale: the semantic scale SemScaleTrainer measured from its pool at the end of training (penultimate "
        "features of the last epoch, alpha = d). Effective number with beta = 0.9999 and 0.99. Correlation over the "
        "10 classes of each seed, then mean ± std over seeds."
    )
    lines.append("")
    rows = []
    for factor in factors:
        group = [r for (m, f, _), r in sorted(runs.items()) if m == "ce" and f == factor]
        if not group:
            continue
        for name in ("scale", "count", "effective number (0.9999)", "effective number (0.99)"):
            pearson = [_correlate(r, name, pearson_correlation) for r in group]
            spearman = [_correlate(r, name, spearman_correlation) for r in group]
            rows.append([f"{factor:g}", name, mean_std(pearson, 2), mean_std(spearman, 2)])
    lines.append(markdown_table(["IF", "per-class quantity", "Pearson", "Spearman"], rows, align="llrr"))
    lines += ["", "## How strong and how count-like were the final weights?", ""]
    lines.append(
        "Largest over smallest final class weight, and the correlation of the final semantic scales with the train "
        "counts (both from each run's last refresh), mean ± std over seeds."
    )
    lines.append("")
    rows = []
    for factor in factors:
        for method in methods:
            group = [r for (m, f, _), r in sorted(runs.items()) if m == method and f == factor]
            if not group:
                continue
            ratios = [max(r["class_weights"]) / min(r["class_weights"]) for r in group]
            counts = [torch.tensor(r["class_counts"], dtype=torch.float64) for r in group]
            scales = [torch.tensor(r["semantic_scales"], dtype=torch.float64) for r in group]
            rows.append(
                [
                    f"{factor:g}",
                    f"`{method}`",
                    mean_std(ratios, 2),
                    mean_std((pearson_correlation(s, c) for s, c in zip(scales, counts)), 2),
                    mean_std((spearman_correlation(s, c) for s, c in zip(scales, counts)), 2),
                ]
            )
    headers = ["IF", "method", "weight max/min", "Pearson(scale, count)", "Spearman(scale, count)"]
    lines.append(markdown_table(headers, rows, align="llrrr"))
    lines.append("")
    return "\n".join(lines)


def _correlate(record: dict, name: str, correlation) -> float:
    accuracy = torch.tensor(record["per_class_accuracy"], dtype=torch.float64)
    counts = torch.tensor(record["class_counts"], dtype=torch.float64)
    values = {
        "scale": lambda: torch.tensor(record["semantic_scales"], dtype=torch.float64),
        "count": lambda: counts,
        "effective number (0.9999)": lambda: effective_number(counts, 0.9999),
        "effective number (0.99)": lambda: effective_number(counts, 0.99),
    }[name]()
    return correlation(values, accuracy)


def _paired_cells(runs: dict, method: str, reference: str, factor: float, seeds: list[int], metric: str) -> list[str]:
    """`mean ± std` of the per-seed difference method − reference, and `wins/losses`; blanks without pairs."""
    if method == reference:
        return ["—", "—"]
    diffs = [
        runs[(method, factor, s)][metric] - runs[(reference, factor, s)][metric]
        for s in seeds
        if (method, factor, s) in runs and (reference, factor, s) in runs
    ]
    diffs = [d for d in diffs if math.isfinite(d)]
    if not diffs:
        return ["n/a", "n/a"]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    value = f"{statistics.mean(diffs):+.3f}" + (f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else "")
    return [value, f"{wins}/{losses}"]


def plot_balanced_accuracy(records: list[dict], study: StudyArguments, path: Path) -> Path | None:
    """Bar chart of balanced accuracy (mean ± std over seeds) per method and imbalance factor."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    runs = _by_key(records)
    factors = sorted({f for _, f, _ in runs})
    methods = _ordered_methods(runs, study)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.5 * len(methods) * len(factors)), 4.0), layout="constrained")
    width = 0.8 / len(factors)
    for j, factor in enumerate(factors):
        means, stds = [], []
        for method in methods:
            values = [r["balanced_accuracy"] for (m, f, _), r in runs.items() if m == method and f == factor]
            means.append(statistics.mean(values) if values else math.nan)
            stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        positions = [i + (j - (len(factors) - 1) / 2) * width for i in range(len(methods))]
        axis.bar(positions, means, width, yerr=stds, capsize=3, label=f"IF {factor:g}")
    axis.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=8)
    axis.set_ylabel("balanced test accuracy")
    low = min((r["balanced_accuracy"] for r in records), default=0.0)
    axis.set_ylim(max(0.0, low - 0.1), 1.0)
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    axis.set_title("Long-tailed digits, ViT: mean ± std over seeds")
    return save_figure(figure, path)


if __name__ == "__main__":
    sys.exit(main())
