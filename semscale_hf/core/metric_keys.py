"""Every metric key the package logs, defined once; README "Logged metrics" lists them (a test keeps both in step).

Two families: `semscale/*`, logged by `SemScaleCallback` at every refresh (through `Trainer.log`, so every
`report_to` integration sees them), and the evaluation metrics that `SemScaleTrainer.evaluate()` adds (Trainer
prefixes them with `eval_`, or the `metric_key_prefix` passed to `evaluate`).
"""

from __future__ import annotations


__all__ = [
    "LOGGED_METRICS",
    "class_accuracy",
    "class_average_precision",
    "class_scale",
    "class_weight",
    "group_accuracy",
    "group_average_precision",
]

PREFIX = "semscale/"
STAGE = "semscale/stage"
REFRESHES = "semscale/refreshes"
WEIGHT_MIN = "semscale/weight_min"
WEIGHT_MEAN = "semscale/weight_mean"
WEIGHT_MAX = "semscale/weight_max"
CLASSES_MEASURED = "semscale/classes_measured"
POOL_FEATURES = "semscale/pool_features"
SCALE_MIN = "semscale/scale_min"
SCALE_MEAN = "semscale/scale_mean"
SCALE_MAX = "semscale/scale_max"
IMBALANCE_RATIO = "semscale/imbalance_ratio"

ACCURACY = "accuracy"
BALANCED_ACCURACY = "balanced_accuracy"
MACRO_F1 = "macro_f1"
ENTITY_PRECISION = "entity_precision"
ENTITY_RECALL = "entity_recall"
ENTITY_F1 = "entity_f1"
MEAN_AVERAGE_PRECISION = "mean_average_precision"
EVAL_PREFIX = "eval_"


def class_weight(name: str) -> str:
    """Key of one class's weight; `name` is the class's `id2label` name (or its id)."""
    return f"semscale/weight/{name}"


def class_scale(name: str) -> str:
    """Key of one class's semantic scale."""
    return f"semscale/scale/{name}"


def group_accuracy(group: str) -> str:
    """Key of the mean per-class accuracy of a shot group: `"many"`, `"medium"` or `"few"`."""
    return f"acc_{group}"


def group_average_precision(group: str) -> str:
    """Key of the mean per-class average precision of a shot group (multi-label)."""
    return f"ap_{group}"


def class_average_precision(class_id: int) -> str:
    """Key of one class's average precision (multi-label)."""
    return f"ap_class_{class_id}"


def class_accuracy(class_id: int) -> str:
    """Key of one class's accuracy (the class id, not its name: ids are what evaluation sees)."""
    return f"acc_class_{class_id}"


_PER_CLASS = "only with at most `semscale_log_per_class_max` classes"
_ENTITY = "evaluation, token classification with IOB tag names, when `seqeval` is installed"
LOGGED_METRICS: list[tuple[str, str, str]] = [
    (STAGE, "every refresh", "1 (balanced): the first refresh ends the warm-up, and only refreshes log it"),
    (REFRESHES, "every refresh", "number of measurements so far"),
    (WEIGHT_MIN, "every refresh", "smallest class weight"),
    (WEIGHT_MEAN, "every refresh", "mean class weight over all classes (1 when every class is measured)"),
    (WEIGHT_MAX, "every refresh", "largest class weight"),
    (CLASSES_MEASURED, "every refresh", "classes with at least `semscale_min_count` pooled features"),
    (POOL_FEATURES, "every refresh", "features in the pool"),
    (SCALE_MIN, "every refresh, once a class is measured", "smallest semantic scale (bits)"),
    (SCALE_MEAN, "every refresh, once a class is measured", "mean semantic scale (bits)"),
    (SCALE_MAX, "every refresh, once a class is measured", "largest semantic scale (bits)"),
    (IMBALANCE_RATIO, "every refresh, once a class is measured", "largest over smallest scale"),
    (class_weight("<name>"), f"every refresh, {_PER_CLASS}", "weight of a class"),
    (class_scale("<name>"), f"every refresh, {_PER_CLASS}", "scale of a class (NaN: unmeasured)"),
    (
        EVAL_PREFIX + "loss",
        "evaluation",
        "the unweighted base loss (CE, focal or LDAM, as trained): comparable across refreshes, unlike the "
        "weighted training `loss`",
    ),
    (EVAL_PREFIX + ACCURACY, "evaluation", "accuracy over all examples"),
    (EVAL_PREFIX + BALANCED_ACCURACY, "evaluation", "mean per-class accuracy (classes with examples)"),
    (EVAL_PREFIX + group_accuracy("many"), "evaluation", "mean accuracy of classes of more than 100 training samples"),
    (EVAL_PREFIX + group_accuracy("medium"), "evaluation", "mean accuracy of classes of 20 to 100 training samples"),
    (EVAL_PREFIX + group_accuracy("few"), "evaluation", "mean accuracy of classes of fewer than 20 training samples"),
    (EVAL_PREFIX + class_accuracy("<c>"), f"evaluation, {_PER_CLASS}", "accuracy of class id c"),
    (EVAL_PREFIX + MACRO_F1, "evaluation, token classification", "mean per-tag F1 over the labelled tokens"),
    (EVAL_PREFIX + ENTITY_PRECISION, _ENTITY, "entity-level precision (`seqeval`, IOB tags)"),
    (EVAL_PREFIX + ENTITY_RECALL, _ENTITY, "entity-level recall"),
    (EVAL_PREFIX + ENTITY_F1, _ENTITY, "entity-level F1"),
    (EVAL_PREFIX + MEAN_AVERAGE_PRECISION, "evaluation, multi-label", "mean per-class average precision"),
    (EVAL_PREFIX + group_average_precision("many"), "evaluation, multi-label", "mean AP of the many-shot classes"),
    (EVAL_PREFIX + group_average_precision("medium"), "evaluation, multi-label", "mean AP of the medium-shot classes"),
    (EVAL_PREFIX + group_average_precision("few"), "evaluation, multi-label", "mean AP of the few-shot classes"),
    (EVAL_PREFIX + class_average_precision("<c>"), f"evaluation, multi-label, {_PER_CLASS}", "AP of class id c"),
]
"""(key, when it is logged, meaning) of every logged metric, in the order of the README table."""
