"""`semscale analyze`: a semantic-scale report (Markdown, JSON, PNG plots) from saved features or from a model.

Two ways in:

* `--features FILE`: a `.safetensors` / `.npz` file with `features` and `labels` (optionally `predictions`,
  `train_counts`), e.g. written by `--save-features` or [`semscale_hf.save_features`];
* `--model DIR --dataset SPEC`: a model saved with `save_pretrained` (an `AutoModelForImageClassification`) and a
  dataset: `digits` (the embedded scikit-learn digits, long-tailed with `--imbalance-factor`), a `datasets` dataset
  saved with `save_to_disk`, or an image folder (`root/<class>/*.png` or `root/<split>/<class>/*.png`). Features are
  extracted with a progress bar; training counts come from the dataset's train split when it has one.

Examples:

    semscale analyze --model ./tiny-vit --dataset digits --imbalance-factor 10 --output-dir report/
    semscale analyze --features features.safetensors --train-counts 500,120,40,9 --output-dir report/
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..core._validation import parse_alpha
from ._options import dashed_options


__all__ = ["analyze_main", "build_analyze_parser", "run_analyze"]

_IMAGE_COLUMNS = ("image", "img", "picture")
_LABEL_COLUMNS = ("label", "labels", "fine_label", "class")


def build_analyze_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Adds the `semscale analyze` options to `parser` (a new parser by default) and returns it.

    Pass a subparser (`subparsers.add_parser("analyze", ...)`) to mount the command in another CLI.
    """
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="semscale analyze",
            description="Semantic-scale report (Markdown, JSON, PNG plots) from features, or from a model and data. "
            "Options take dashes or underscores (--output-dir or --output_dir), as in `semscale demo`.",
            epilog=__doc__.split("Examples:", 1)[1],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    source = parser.add_argument_group("input (either --features, or --model with --dataset)")
    source.add_argument(
        "--features", help=".safetensors or .npz file with features, labels[, predictions, train_counts]"
    )
    source.add_argument("--model", help="directory of a model saved with save_pretrained (image classification)")
    source.add_argument("--dataset", help="'digits', a save_to_disk directory, or an image folder")
    source.add_argument("--split", default=None, help="split to analyse (default: 'test' if present, else 'train')")
    source.add_argument("--train-split", default="train", help="split whose class counts are the training counts")
    source.add_argument("--imbalance-factor", type=float, default=None, help="digits only: long-tailed train split")
    source.add_argument(
        "--profile", default="exp", choices=["exp", "step"], help="digits only: long-tail profile (as the demo)"
    )
    source.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="digits only: seed of the train/test split and the long-tailed subset (0, as the demo's default)",
    )
    source.add_argument("--image-column", default=None, help="image column (default: detected)")
    source.add_argument("--label-column", default=None, help="label column (default: detected)")
    source.add_argument("--limit", type=int, default=None, help="analyse at most this many examples")
    source.add_argument("--batch-size", type=int, default=64)
    source.add_argument("--device", default=None, help="e.g. cpu or cuda (default: cuda if available)")
    source.add_argument("--feature-module", default=None, help="name of the classification head (default: detected)")
    source.add_argument("--cache-dir", default=None, help="datasets cache directory for image folders")
    source.add_argument("--save-features", default=None, help="also save the extracted features to this file")
    source.add_argument(
        "--train-counts",
        default=None,
        help="training counts per class: comma-separated, or a JSON file with a list (overrides other sources)",
    )

    measure = parser.add_argument_group("measurement")
    measure.add_argument("--alpha", default="dim", help="'dim' (feature dimension) or a positive number")
    measure.add_argument("--no-center", dest="center", action="store_false", help="do not subtract class means")
    measure.add_argument("--normalize", action="store_true", help="L2-normalise features first")
    measure.add_argument("--min-count", type=int, default=2, help="classes with fewer examples are not measured")
    measure.add_argument("--power", type=float, default=1.0, help="weight column: w ~ S^(-power)")
    measure.add_argument(
        "--marginal-classes",
        default="auto",
        help="'auto' (largest, median, smallest class), 'none', or comma-separated class ids",
    )
    measure.add_argument("--marginal-repeats", type=int, default=5)
    measure.add_argument("--seed", type=int, default=0, help="seed of the marginal-effect subset draws")

    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", required=True, help="where report.md, report.json and the PNGs go")
    output.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots (no matplotlib)")
    output.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return parser


def analyze_main(argv: list[str] | None = None) -> int:
    """Entry point of `semscale analyze`; returns the exit code (0 on success, 1 on an input error)."""
    parser = build_analyze_parser()
    args = parser.parse_args(dashed_options(sys.argv[1:] if argv is None else argv))
    return run_analyze(args, parser)


def run_analyze(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Runs `semscale analyze` on parsed arguments; returns the exit code."""
    if (args.features is None) == (args.model is None):
        return _fail(parser, "pass either --features FILE, or --model DIR with --dataset")
    if args.model is not None and args.dataset is None:
        return _fail(parser, "--model needs --dataset ('digits', a save_to_disk directory or an image folder)")
    if args.limit is not None and args.limit < 1:
        return _fail(parser, f"--limit must be at least 1, got {args.limit}")
    try:
        report = _build_report(args)
        written = report.save(args.output_dir, plots=args.plots)
    except (ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as error:
        print(f"semscale analyze: error: {error}", file=sys.stderr)
        return 1
    summary = report.summary
    print(
        f"{report.settings['num_samples']} examples, {report.settings['num_classes']} classes "
        f"({summary.get('num_measured')} measured): scale imbalance ratio {summary.get('max_min_ratio'):.4g}, "
        f"CV {summary.get('coefficient_of_variation'):.4g}"
        + (
            f", Pearson r(scale, accuracy) {summary['pearson_scale_accuracy']:.3g}"
            if "pearson_scale_accuracy" in summary
            else ""
        )
    )
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    return 0


def _fail(parser: argparse.ArgumentParser | None, message: str) -> int:
    if parser is not None:
        parser.error(message)  # exits with status 2, as argparse does for usage errors
    print(f"semscale analyze: error: {message}", file=sys.stderr)
    return 2


def _build_report(args: argparse.Namespace):
    from ..analysis.extraction import load_features, save_features
    from ..analysis.report import SemanticScaleReport

    class_names = None
    if args.features is not None:
        extracted = load_features(args.features)
        num_classes = None
    else:
        extracted, num_classes, class_names = _extract_from_model(args)
        if args.save_features:
            save_features(args.save_features, extracted)
    if args.limit is not None and args.features is not None:
        extracted.features, extracted.labels = extracted.features[: args.limit], extracted.labels[: args.limit]
        if extracted.predictions is not None:
            extracted.predictions = extracted.predictions[: args.limit]
    train_counts = extracted.train_counts
    if args.train_counts is not None:
        train_counts = _parse_train_counts(args.train_counts)
    if num_classes is None and train_counts is not None:
        # classes without examples in the features count too; counts too short for the labels are named by the
        # report's own check
        labelled = extracted.labels[extracted.labels >= 0]
        num_classes = max(len(train_counts), int(labelled.max()) + 1 if labelled.numel() else 0) or None
    return SemanticScaleReport.from_features(
        extracted.features,
        extracted.labels,
        predictions=extracted.predictions,
        train_counts=train_counts,
        num_classes=num_classes,
        class_names=class_names,
        alpha=_parse_alpha(args.alpha),
        center=args.center,
        normalize=args.normalize,
        min_count=args.min_count,
        power=args.power,
        marginal_classes=_parse_marginal_classes(args.marginal_classes),
        marginal_repeats=args.marginal_repeats,
        seed=args.seed,
    )


def _extract_from_model(args: argparse.Namespace):
    from transformers import AutoModelForImageClassification

    from ..analysis.extraction import ExtractedFeatures, batches_from_dataset, extract_features
    from ..data import class_counts, make_image_transform

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"--model {args.model!r} is not a directory saved with save_pretrained (no config.json)"
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForImageClassification.from_pretrained(model_dir).to(device)
    config = model.config
    splits = _load_splits(args)
    split = args.split or ("test" if "test" in splits else "train" if "train" in splits else next(iter(splits)))
    if split not in splits:
        raise KeyError(f"split {split!r} not found; the dataset has splits {sorted(splits)}")
    dataset = _normalise_columns(splits[split], args.image_column, args.label_column)
    if args.limit is not None:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    num_classes = config.num_labels
    train_counts = None
    if args.train_split in splits and args.train_split != split:
        train = _normalise_columns(splits[args.train_split], args.image_column, args.label_column)
        train_counts = torch.tensor(class_counts(train, num_classes=num_classes))
    class_names = _class_names(dataset, config, num_classes)

    image_size, mean, std = _preprocessing(model_dir, config)
    transform = make_image_transform(image_size, num_channels=getattr(config, "num_channels", 3), mean=mean, std=std)
    batches = batches_from_dataset(dataset.with_transform(transform), args.batch_size)
    extracted = extract_features(
        model,
        batches,
        num_labels=num_classes,
        feature_module=args.feature_module,
        device=device,
        progress=args.progress,
        desc=f"Extracting features ({split})",
    )
    extracted = ExtractedFeatures(extracted.features, extracted.labels, extracted.predictions, train_counts)
    return extracted, num_classes, class_names


def _load_splits(args: argparse.Namespace) -> dict[str, Any]:
    import datasets

    from ..data import load_digits_dataset, load_long_tailed_digits

    if args.dataset == "digits":
        # the data seed, not the subset seed: the split must stay the one the model was trained against
        if args.imbalance_factor is not None:
            return dict(
                load_long_tailed_digits(
                    imbalance_factor=args.imbalance_factor, profile=args.profile, seed=args.data_seed
                )
            )
        return dict(load_digits_dataset(seed=args.data_seed))
    if args.imbalance_factor is not None:
        raise ValueError("--imbalance-factor applies to --dataset digits only")
    root = Path(args.dataset)
    if not root.is_dir():
        raise FileNotFoundError(f"--dataset {args.dataset!r} is neither 'digits' nor an existing directory")
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        loaded = datasets.load_from_disk(str(root))
        return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    return dict(datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=args.cache_dir))


def _normalise_columns(dataset: Any, image_column: str | None, label_column: str | None) -> Any:
    """Selects the image and label columns and renames them to "image" and "label"."""
    import datasets

    features = dataset.features
    if image_column is None:
        image_column = next((c for c in features if isinstance(features[c], datasets.Image)), None)
        image_column = image_column or next((c for c in _IMAGE_COLUMNS if c in features), None)
    if label_column is None:
        label_column = next((c for c in features if isinstance(features[c], datasets.ClassLabel)), None)
        label_column = label_column or next((c for c in _LABEL_COLUMNS if c in features), None)
    for kind, column in (("image", image_column), ("label", label_column)):
        if column is None or column not in features:
            raise ValueError(f"cannot find the {kind} column among {list(features)}; pass --{kind}-column")
    dataset = dataset.select_columns([image_column, label_column])
    renames = {old: new for old, new in ((image_column, "image"), (label_column, "label")) if old != new}
    return dataset.rename_columns(renames) if renames else dataset


def _class_names(dataset: Any, config: Any, num_classes: int) -> list[str]:
    import datasets

    feature = dataset.features["label"]
    if isinstance(feature, datasets.ClassLabel) and feature.num_classes == num_classes:
        return list(feature.names)
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(c, id2label.get(str(c), c))) for c in range(num_classes)]


def _preprocessing(model_dir: Path, config: Any) -> tuple[int, Any, Any]:
    """Image size, mean and std: from `preprocessor_config.json` when saved with the model, else the config."""
    size, mean, std = getattr(config, "image_size", None), 0.5, 0.5
    processor_file = model_dir / "preprocessor_config.json"
    if processor_file.is_file():
        processor = json.loads(processor_file.read_text(encoding="utf-8"))
        saved_size = processor.get("size")
        if isinstance(saved_size, dict):
            saved_size = saved_size.get("height", saved_size.get("shortest_edge"))
        size = saved_size or size
        mean, std = processor.get("image_mean", mean), processor.get("image_std", std)
    if isinstance(size, (list, tuple)):
        size = size[0]
    if not isinstance(size, int):
        raise ValueError(f"cannot tell the model's input size: config.image_size is {size!r}; save an image processor")
    return size, mean, std


def _parse_train_counts(value: str) -> list[int]:
    path = Path(value)
    if path.suffix == ".json" or path.is_file():
        counts = json.loads(path.read_text(encoding="utf-8"))
    else:
        try:
            counts = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"--train-counts must be comma-separated integers or a JSON file, got {value!r}"
            ) from None
    if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts):
        raise ValueError(f"--train-counts must be a list of non-negative integers, got {counts!r}")
    return counts


def _parse_alpha(value: str) -> float | str:
    try:
        return parse_alpha(value)
    except ValueError:
        raise ValueError(f"--alpha must be 'dim' or a positive number, got {value!r}") from None


def _parse_marginal_classes(value: str) -> Sequence[int] | str | None:
    if value in ("auto", "none"):
        return None if value == "none" else value
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--marginal-classes must be 'auto', 'none' or class ids like 0,4,9, got {value!r}") from None


if __name__ == "__main__":
    raise SystemExit(analyze_main())
