"""The `semantic_scale` evaluate module: values, batching, offline loading by name and path, 2 processes, bad input."""

import doctest
import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers.reference import reference_class_scales
from scipy import stats

from semscale_hf.commands.install_metric import install_metric_main
from semscale_hf.metrics import SEMANTIC_SCALE_PATH, semantic_scale_metric
from semscale_hf.metrics.loading import load_metric, register_evaluate_module


evaluate = pytest.importorskip("evaluate")
CARD = Path(SEMANTIC_SCALE_PATH) / "README.md"
OFFLINE_ENV = {"HF_EVALUATE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def evaluate_cache(tmp_path_factory):
    """Points evaluate's module and data caches into a temporary directory, away from the user's cache."""
    root = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate.config, "HF_MODULES_CACHE", root / "modules")
        patch.setattr(evaluate.config, "HF_METRICS_CACHE", root / "metrics")
        patch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)  # read at call time: no Hub lookups
        yield root


@pytest.fixture(scope="module")
def metric(evaluate_cache):
    return evaluate.load(SEMANTIC_SCALE_PATH, keep_in_memory=True)


def _data(seed=0, num_samples=240, dim=12, num_classes=4):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (num_samples,), generator=generator)
    # class-dependent spread, so that the scales really differ
    spread = torch.linspace(0.5, 2.0, num_classes)[labels][:, None]
    embeddings = torch.randn(num_samples, dim, generator=generator) * spread + labels[:, None]
    predictions = torch.where(torch.rand(num_samples, generator=generator) < 0.7, labels, 0)
    return embeddings, labels, predictions


def test_values_match_plain_references(metric):
    embeddings, labels, predictions = _data()
    result = metric.compute(embeddings=embeddings, labels=labels, predictions=predictions)

    scales = reference_class_scales(embeddings.double().numpy(), labels.numpy(), 4)
    np.testing.assert_allclose(result["semantic_scales"], scales, rtol=1e-5)
    assert result["class_counts"] == np.bincount(labels.numpy(), minlength=4).tolist()
    np.testing.assert_allclose(result["normalized_scales"], scales / scales.max(), rtol=1e-5)
    np.testing.assert_allclose(result["scale_imbalance_ratio"], scales.max() / scales.min(), rtol=1e-5)
    np.testing.assert_allclose(result["scale_cv"], scales.std() / scales.mean(), rtol=1e-5)
    shares = scales / scales.sum()
    np.testing.assert_allclose(result["scale_kl_uniform"], np.sum(shares * np.log(shares * 4)), rtol=1e-4)

    accuracy = [float(np.mean(predictions.numpy()[labels.numpy() == c] == c)) for c in range(4)]
    np.testing.assert_allclose(result["per_class_accuracy"], accuracy, rtol=1e-12)
    assert result["accuracy"] == pytest.approx(float((predictions == labels).double().mean()))
    assert result["pearson_scale_accuracy"] == pytest.approx(stats.pearsonr(scales, accuracy)[0], rel=1e-5)
    assert result["spearman_scale_accuracy"] == pytest.approx(stats.spearmanr(scales, accuracy)[0], rel=1e-9)
    assert result["num_measured"] == 4


def test_module_result_equals_the_fast_path_exactly(metric):
    embeddings, labels, predictions = _data(1)
    assert metric.compute(embeddings=embeddings.numpy(), labels=labels.tolist(), predictions=predictions) == (
        semantic_scale_metric(embeddings, labels, predictions)
    )
    no_predictions = metric.compute(embeddings=embeddings.tolist(), labels=labels.numpy())
    assert no_predictions == semantic_scale_metric(embeddings, labels)
    assert "per_class_accuracy" not in no_predictions and "pearson_scale_accuracy" not in no_predictions


@pytest.mark.parametrize("kind", ["tensor", "numpy", "list"])
def test_add_batch_loop_equals_one_shot_compute(metric, kind):
    embeddings, labels, predictions = _data(2)
    one_shot = metric.compute(embeddings=embeddings, labels=labels, predictions=predictions, alpha=0.5)
    convert = {"tensor": lambda x: x, "numpy": lambda x: x.numpy(), "list": lambda x: x.tolist()}[kind]
    for start in range(0, len(labels), 37):  # uneven batches
        rows = slice(start, start + 37)
        metric.add_batch(
            embeddings=convert(embeddings[rows]), labels=convert(labels[rows]), predictions=convert(predictions[rows])
        )
    assert metric.compute(alpha=0.5) == one_shot


def test_add_one_example_at_a_time_equals_one_shot_compute(metric):
    embeddings, labels, _ = _data(3, num_samples=40)
    for vector, label in zip(embeddings, labels):
        metric.add(embeddings=vector, labels=label)
    assert metric.compute(num_classes=5) == metric.compute(embeddings=embeddings, labels=labels, num_classes=5)


def test_unmeasured_and_absent_classes_are_none(metric):
    embeddings, labels, predictions = _data(4, num_samples=30, num_classes=3)
    labels[0], labels[1:] = 3, labels[1:].clamp(max=2)  # class 3 has one example, class 4 none
    result = metric.compute(embeddings=embeddings, labels=labels, predictions=predictions, num_classes=5)
    assert result["semantic_scales"][3:] == [None, None]
    assert result["normalized_scales"][3:] == [None, None]
    assert result["class_counts"][3:] == [1, 0]
    assert result["per_class_accuracy"][3] == 0.0 and result["per_class_accuracy"][4] is None
    assert result["num_measured"] == 3
    json.dumps(result, allow_nan=False)  # per-class lists are strict JSON


def test_options_reach_the_math(metric):
    embeddings, labels, _ = _data(5)
    for options in [{"alpha": 1.0}, {"center": False}, {"normalize": True}, {"min_count": 70}]:
        got = metric.compute(embeddings=embeddings, labels=labels, **options)["semantic_scales"]
        alpha = options.get("alpha", "dim")
        want = reference_class_scales(
            embeddings.double().numpy(),
            labels.numpy(),
            4,
            alpha=alpha,
            center=options.get("center", True),
            normalize=options.get("normalize", False),
            min_count=options.get("min_count", 2),
        )
        np.testing.assert_allclose(np.asarray(got, dtype=float), want, rtol=1e-5, equal_nan=True)


def _single_class():
    return {"embeddings": [[0.0, 1.0], [1.0, 0.0]], "labels": [1, 1]}


BAD_INPUTS = {
    "unequal_lengths": ({"embeddings": [[0.0, 1.0], [1.0, 0.0, 2.0]], "labels": [0, 1]}, ValueError, "same length"),
    "empty": ({"embeddings": [], "labels": []}, ValueError, "no examples"),
    "nan": ({"embeddings": [[0.0, float("nan")], [1.0, 0.0]], "labels": [0, 1]}, ValueError, "NaN"),
    "inf": ({"embeddings": np.array([[0.0, np.inf], [1.0, 0.0]]), "labels": [0, 1]}, ValueError, "NaN or inf"),
    "single_class": (_single_class(), ValueError, "single class"),
    "float_labels": ({"embeddings": [[0.0, 1.0], [1.0, 0.0]], "labels": [0.5, 1.0]}, TypeError, "integer class ids"),
    "float_label_tensor": (
        {"embeddings": torch.eye(2), "labels": torch.tensor([0.0, 1.0])},
        TypeError,
        "integer class ids",
    ),
    "string_labels": ({"embeddings": [[0.0, 1.0], [1.0, 0.0]], "labels": ["a", "b"]}, TypeError, "integer class ids"),
    "float_predictions": (
        {"embeddings": torch.eye(2), "labels": [0, 1], "predictions": [0.2, 1]},
        TypeError,
        "predictions must be integer",
    ),
    "length_mismatch": (
        {"embeddings": torch.eye(3), "labels": [0, 1]},
        ValueError,
        "3 embeddings but 2 (labels|references)",
    ),
    "one_dimensional": ({"embeddings": [0.0, 1.0], "labels": [0, 1]}, ValueError, "2-D"),
    "negative_label": ({"embeddings": torch.eye(2), "labels": [-1, 1]}, ValueError, "non-negative"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(metric, case):
    inputs, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        metric.compute(**inputs)


@pytest.mark.parametrize(
    "case",
    ["unequal_lengths", "empty", "nan", "single_class", "float_labels", "length_mismatch", "one_dimensional"],
)
def test_fast_path_rejects_the_same_bad_input(case):
    inputs, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        semantic_scale_metric(inputs["embeddings"], inputs["labels"], inputs.get("predictions"))


def test_errors_that_span_batches(metric):
    metric.add_batch(embeddings=torch.eye(4), labels=[0, 0, 1, 1])
    metric.add_batch(embeddings=torch.ones(2, 3), labels=[0, 1])
    with pytest.raises(ValueError, match=r"same length, got lengths \[3, 4\] across the added batches"):
        metric.compute()
    metric.add_batch(embeddings=torch.eye(4), labels=[0, 0, 1, 1], predictions=[0, 0, 1, 1])
    metric.add_batch(embeddings=torch.eye(4), labels=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="predictions were given for only 4 of 8 examples"):
        metric.compute()
    with pytest.raises(ValueError, match="as references= or as labels=, not both"):
        metric.add_batch(embeddings=torch.eye(2), labels=[0, 1], references=[0, 1])
    with pytest.raises(ValueError, match="Bad inputs for semantic_scale: \\['logits'\\]"):
        metric.add_batch(embeddings=torch.eye(2), labels=[0, 1], logits=[0, 1])
    with pytest.raises(TypeError, match="references must be integer class ids, got 1.5"):
        metric.add(embeddings=[0.0, 1.0], labels=1.5)


def test_compute_signature_has_explicit_options_only():
    from semscale_hf.metrics.semantic_scale.semantic_scale import SemanticScale

    parameters = inspect.signature(SemanticScale._compute).parameters
    assert not any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    assert list(parameters)[1:] == [
        "embeddings",
        "references",
        "predictions",
        "num_classes",
        "alpha",
        "center",
        "normalize",
        "min_count",
    ]


def test_metric_docstring_and_card_examples_run(metric, evaluate_cache):
    module = sys.modules[type(metric).__module__]
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = {"kwargs_description": module._KWARGS_DESCRIPTION}
    # the card's ```python blocks with >>> prompts
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", CARD.read_text(encoding="utf-8"), flags=re.S)):
        if ">>>" in block:
            examples[f"card_{i}"] = block
    assert len(examples) == 2
    for name, text in examples.items():
        runner.run(parser.get_doctest(text, {}, name, None, 0))
    assert runner.summarize(verbose=False).failed == 0


def test_card_and_docstring_document_every_input_and_output(metric):
    module = sys.modules[type(metric).__module__]
    card = CARD.read_text(encoding="utf-8")
    embeddings, labels, predictions = _data(6)
    outputs = metric.compute(embeddings=embeddings, labels=labels, predictions=predictions)
    options = list(inspect.signature(module.SemanticScale._compute).parameters)[1:]
    for name in [*outputs, *options]:
        assert f"**{name}**" in card, f"{name} missing from the card"
        assert re.search(rf"\b{name} \(", module._KWARGS_DESCRIPTION), f"{name} missing from _KWARGS_DESCRIPTION"
    for section in ["## Metric Description", "## How to Use", "### Inputs", "### Output Values", "## Limitations"]:
        assert section in card
    assert "## Citation" in card and "ma2023delving" in card


# --- offline loading ----------------------------------------------------------------------------------------------


def test_bare_name_needs_the_one_time_registration(evaluate_cache):
    x, y = torch.eye(4).repeat(2, 1), torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    with pytest.raises(FileNotFoundError):
        evaluate.load("semantic_scale")
    by_path = evaluate.load(SEMANTIC_SCALE_PATH, keep_in_memory=True).compute(embeddings=x, labels=y)
    assert install_metric_main([]) == 0  # `semscale install-metric`, into the (patched) default modules cache
    entry = evaluate_cache / "modules" / "evaluate_modules" / "metrics" / "evaluate-metric--semantic_scale"
    assert len(list(entry.glob("*/semantic_scale.py"))) == 1
    assert evaluate.load("semantic_scale", keep_in_memory=True).compute(embeddings=x, labels=y) == by_path


FRESH_PROCESS_SCRIPT = """
import json, multiprocessing, os
from pathlib import Path

home = Path(os.environ["HF_HOME"])
before = sorted(home.rglob("*"))
import semscale_hf
assert sorted(home.rglob("*")) == before, "import semscale_hf wrote into the cache"

import evaluate, torch
from semscale_hf.metrics.loading import load_metric
from semscale_hf.metrics import SEMANTIC_SCALE_PATH

generator = torch.Generator().manual_seed(0)
labels = torch.randint(0, 3, (90,), generator=generator)
embeddings = torch.randn(90, 6, generator=generator) * (1 + labels[:, None])
predictions = torch.where(labels == 2, 0, labels)


def rank_main(rank, queue):
    metric = evaluate.load(
        "semantic_scale", num_process=2, process_id=rank, experiment_id="two-ranks", cache_dir=str(home / "shared")
    )
    for start in range(rank * 45, rank * 45 + 45, 20):  # each rank adds its half, in batches
        rows = slice(start, min(start + 20, rank * 45 + 45))
        metric.add_batch(embeddings=embeddings[rows], labels=labels[rows], predictions=predictions[rows])
    queue.put((rank, metric.compute(alpha=2.0)))


# Two forked ranks share nothing but the file-locked cache_dir. Fork before this process runs any BLAS/OpenMP
# work: a child forked after the thread pools exist can hang on their locks.
context = multiprocessing.get_context("fork")
queue = context.Queue()
ranks = [context.Process(target=rank_main, args=(rank, queue)) for rank in (0, 1)]
for process in ranks:
    process.start()
results = dict(queue.get(timeout=120) for _ in ranks)
for process in ranks:
    process.join(timeout=60)
    assert process.exitcode == 0

inputs = dict(embeddings=embeddings, labels=labels, predictions=predictions, alpha=2.0)
by_name = evaluate.load("semantic_scale").compute(**inputs)
assert evaluate.load(SEMANTIC_SCALE_PATH).compute(**inputs) == by_name
assert load_metric().compute(**inputs) == by_name
print("RESULT", json.dumps({"by_name": by_name, "rank0": results[0], "rank1": results[1]}))
"""


@pytest.mark.distributed
def test_fresh_offline_process_loads_by_name_and_two_processes_equal_one(tmp_path):
    home = tmp_path / "hf_home"
    # the documented one-time command, for this HF_HOME; then everything else runs in a fresh offline process
    assert install_metric_main(["--modules-cache", str(home / "modules")]) == 0
    env = {**os.environ, **OFFLINE_ENV, "HF_HOME": str(home)}
    env.pop("HF_MODULES_CACHE", None)
    process = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT], env=env, capture_output=True, text=True, timeout=240
    )
    assert process.returncode == 0, process.stderr[-3000:]
    line = next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (90,), generator=generator)
    embeddings = torch.randn(90, 6, generator=generator) * (1 + labels[:, None])
    want = semantic_scale_metric(embeddings, labels, torch.where(labels == 2, 0, labels), alpha=2.0)
    assert results["by_name"] == json.loads(json.dumps(want))
    assert results["rank1"] is None  # only process 0 gets the result
    got = results["rank0"]
    assert got.keys() == want.keys()
    assert got["class_counts"] == want["class_counts"] and got["per_class_accuracy"] == want["per_class_accuracy"]
    np.testing.assert_allclose(got["semantic_scales"], want["semantic_scales"], rtol=1e-12)
    np.testing.assert_allclose(got["scale_cv"], want["scale_cv"], rtol=1e-9)


def test_register_is_idempotent_and_makes_its_entry_the_newest(tmp_path):
    first = register_evaluate_module(tmp_path)
    folder = tmp_path / "evaluate_modules" / "metrics" / "evaluate-metric--semantic_scale"
    assert first.parent.parent == folder and first.name == "semantic_scale.py"
    assert "from semscale_hf.metrics.semantic_scale.semantic_scale import SemanticScale" in first.read_text()
    for package in [tmp_path, tmp_path / "evaluate_modules", folder.parent, folder, first.parent]:
        assert (package / "__init__.py").is_file(), package  # the cached module is imported as a package path
    # an entry written later (another version) would win evaluate's newest-mtime choice until we register again
    stale = folder / ("0" * 64) / "semantic_scale.py"
    stale.parent.mkdir()
    stale.write_text("# a stale entry\n")
    second = register_evaluate_module(tmp_path)
    assert second == first
    assert second.stat().st_mtime >= stale.stat().st_mtime
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted([first.parent.name, "0" * 64])


def test_load_metric_passes_options_to_evaluate(evaluate_cache, tmp_path):
    loaded = load_metric(cache_dir=str(tmp_path), experiment_id="exp")
    assert loaded.name == "semantic_scale" and loaded.experiment_id == "exp"
    assert Path(loaded.data_dir).is_relative_to(tmp_path)


def test_label_minus_100_is_ignored_like_in_the_math_api():
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(30, 4, generator=generator)
    labels = torch.arange(30) % 3
    predictions = (labels + (torch.arange(30) % 4 == 0)) % 3
    ignored = labels.clone()
    ignored[::5] = -100
    kept = ignored != -100
    with_ignored = semantic_scale_metric(embeddings, ignored, predictions)
    assert with_ignored == semantic_scale_metric(embeddings[kept], labels[kept], predictions[kept])
    with pytest.raises(ValueError, match="non-negative class ids"):
        semantic_scale_metric(embeddings, predictions, torch.full((30,), -100))  # predictions are never ignored


_LOCAL_ACCURACY = """
import datasets
import evaluate


class LocalAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="accuracy",
            citation="",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"accuracy": sum(p == r for p, r in zip(predictions, references)) / len(references)}
"""


def test_references_is_evaluates_name_and_labels_an_alias(metric):
    embeddings, labels, predictions = _data(6)
    by_labels = metric.compute(embeddings=embeddings, labels=labels, predictions=predictions)
    assert metric.compute(embeddings=embeddings, references=labels, predictions=predictions) == by_labels
    metric.add_batch(embeddings=embeddings[:100], references=labels[:100], predictions=predictions[:100])
    metric.add_batch(embeddings=embeddings[100:], labels=labels[100:], predictions=predictions[100:])
    assert metric.compute() == by_labels


def test_the_metric_works_inside_evaluate_combine(metric, evaluate_cache, tmp_path):
    module_dir = tmp_path / "local_accuracy"
    module_dir.mkdir()
    (module_dir / "local_accuracy.py").write_text(_LOCAL_ACCURACY)
    accuracy = evaluate.load(str(module_dir), keep_in_memory=True)
    combined = evaluate.combine([metric, accuracy])
    embeddings, labels, predictions = _data(7)
    for start in range(0, len(labels), 60):
        rows = slice(start, start + 60)
        combined.add_batch(predictions=predictions[rows], references=labels[rows], embeddings=embeddings[rows])
    results = combined.compute()
    expected = semantic_scale_metric(embeddings, labels, predictions)
    assert results["semantic_scales"] == expected["semantic_scales"], sorted(results)
    accuracy = float((predictions == labels).double().mean())  # both modules report it: combine prefixes them
    assert results["semantic_scale_accuracy"] == results["local_accuracy_accuracy"] == pytest.approx(accuracy)


def test_add_takes_references_as_an_alias_of_reference(metric):
    embeddings, labels, _ = _data(8, num_samples=40)
    for vector, label in zip(embeddings, labels):
        metric.add(embeddings=vector, references=label)  # evaluate's own add accepts the plural too
    assert metric.compute() == metric.compute(embeddings=embeddings, references=labels)
    with pytest.raises(ValueError, match="as reference= or references=, not both"):
        metric.add(embeddings=embeddings[0], reference=0, references=0)


def test_predictions_of_ignored_rows_are_ignored_too(metric):
    embeddings, labels, predictions = _data(9, num_samples=40)
    ignored, masked = labels.clone(), predictions.clone()
    ignored[::4] = masked[::4] = -100  # e.g. padding: neither a label nor a prediction
    kept = ignored != -100
    expected = semantic_scale_metric(embeddings[kept], labels[kept], predictions[kept])
    assert semantic_scale_metric(embeddings, ignored, masked) == expected
    assert semantic_scale_metric(embeddings.numpy(), ignored.tolist(), masked.tolist()) == expected
    assert metric.compute(embeddings=embeddings, references=ignored, predictions=masked) == expected


@pytest.mark.parametrize("layout", ["reversed", "big_endian", "uint16", "uint32", "uint64", "big_endian_ids"])
def test_fast_path_takes_the_numpy_layouts_the_module_takes(metric, layout):
    embeddings, labels, predictions = _data(10)
    array, ids, predicted = embeddings.numpy(), labels.numpy(), predictions.numpy()
    if layout == "reversed":  # negative strides
        array, ids, predicted = array[::-1], ids[::-1], predicted[::-1]
    elif layout == "big_endian":
        array = array.astype(">f4")
    elif layout == "big_endian_ids":
        ids, predicted = ids.astype(">i8"), predicted.astype(">i4")
    else:
        ids, predicted = ids.astype(layout), predicted.astype(layout)
    expected = metric.compute(embeddings=array, references=ids, predictions=predicted)
    assert semantic_scale_metric(array, ids, predicted) == expected


def test_boolean_labels_are_named_as_such():
    with pytest.raises(TypeError, match=r"labels must be integer class ids, got dtype torch.bool; cast them"):
        semantic_scale_metric(torch.eye(2), np.array([False, True]))


def test_object_array_of_equal_length_rows_is_stacked(metric):
    embeddings, labels, _ = _data(11)
    rows = np.empty(len(embeddings), dtype=object)  # what df["emb"].to_numpy() gives
    for i, row in enumerate(embeddings.numpy()):
        rows[i] = row
    expected = semantic_scale_metric(embeddings, labels)
    assert semantic_scale_metric(rows, labels) == expected
    assert metric.compute(embeddings=rows, references=labels) == expected
    rows[3] = rows[3][:-1]
    with pytest.raises(ValueError, match=r"same length, got lengths \[11, 12\]"):
        semantic_scale_metric(rows, labels)
    with pytest.raises(ValueError, match=r"same length and hold numbers, got rows of lengths \[11, 12\]"):
        metric.compute(embeddings=rows, references=labels)


def test_bfloat16_rows_and_lists_of_tensors(metric):
    embeddings, labels, _ = _data(12, num_samples=40)
    half = embeddings.bfloat16()
    assert semantic_scale_metric(list(half), labels.tolist()) == semantic_scale_metric(half, labels)
    expected = semantic_scale_metric(half.float(), labels)  # the module stores float32
    assert metric.compute(embeddings=list(half), references=labels) == expected
    for vector, label in zip(half, labels):
        metric.add(embeddings=vector, reference=label)
    assert metric.compute() == expected


def test_one_measured_class_has_no_imbalance_statistics(metric):
    embeddings = torch.randn(3, 4, generator=torch.Generator().manual_seed(13))
    result = semantic_scale_metric(embeddings, [0, 0, 1], predictions=[0, 0, 1])
    assert result["num_measured"] == 1 and result["normalized_scales"] == [1.0, None]
    for key in ("scale_imbalance_ratio", "scale_cv", "scale_kl_uniform", "pearson_scale_accuracy"):
        assert math.isnan(result[key]), key
    module_result = metric.compute(embeddings=embeddings, references=[0, 0, 1])
    assert math.isnan(module_result["scale_imbalance_ratio"]) and math.isnan(module_result["scale_cv"])
