"""Smoke tests of the example scripts (tiny models, a few steps) and tests of their shared helpers and aggregation.

The scripts live in `examples/` and import `common` from their own folder, so that folder goes on `sys.path`.
The full studies are not run here.
"""

from __future__ import annotations

import json
import math
import pickle
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import balanced_bias  # noqa: E402
import cifar_lt  # noqa: E402
import common  # noqa: E402
import long_tailed_study  # noqa: E402
import marginal_effect  # noqa: E402

from semscale_hf.data import class_counts, load_digits_dataset, long_tailed_counts  # noqa: E402


# A tiny ViT and two optimizer steps: enough to run every code path of a script.
TINY = [
    "--image_size=8",
    "--patch_size=4",
    "--hidden_size=16",
    "--num_hidden_layers=1",
    "--num_attention_heads=2",
    "--max_steps=2",
    "--per_device_train_batch_size=16",
    "--semscale_refresh_steps=1",
]


# ------------------------------------------------------------------------------------------------------------ common
@pytest.mark.parametrize("model_type", ["vit", "resnet"])
def test_build_model_is_seeded_and_has_the_right_head(model_type):
    model_args = common.ModelArguments(model_type=model_type, image_size=8, hidden_size=16, num_attention_heads=2)
    first, second = common.build_model(model_args, 10, seed=3), common.build_model(model_args, 10, seed=3)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    logits = first(pixel_values=torch.randn(2, 3, 8, 8)).logits
    assert logits.shape == (2, 10)
    features, logits_again = common.extract_features(first, torch.randn(5, 3, 8, 8), batch_size=2)
    assert features.shape[0] == 5 and logits_again.shape == (5, 10)


def test_build_model_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        common.build_model(common.ModelArguments(image_size=10, patch_size=4), 10, seed=0)
    with pytest.raises(ValueError, match="model_type"):
        common.build_model(common.ModelArguments(model_type="mlp"), 10, seed=0)


def test_method_overrides_defer_only_the_deferred_methods():
    ce = common.method_overrides("ce", num_train_epochs=30, deferred_fraction=1 / 3)
    assert ce["semscale_weighting"] == "none" and ce["semscale_warmup_epochs"] == 0.0
    drw = common.method_overrides("ldam_drw", num_train_epochs=30, deferred_fraction=1 / 3)
    assert drw["semscale_base_loss"] == "ldam" and drw["semscale_weighting"] == "effective_number"
    assert drw["semscale_warmup_epochs"] == pytest.approx(10.0)
    minus = common.method_overrides("semscale_focal_p-1", num_train_epochs=30, deferred_fraction=0.5)
    assert minus["semscale_power"] == -1.0 and minus["semscale_base_loss"] == "focal"
    assert minus["semscale_warmup_epochs"] == 15.0 and "deferred" not in minus
    # every method yields valid training arguments
    for method in common.METHODS:
        overrides = common.method_overrides(method, num_train_epochs=3, deferred_fraction=0.2)
        common.SemScaleTrainingArguments(output_dir="unused", **overrides)
    with pytest.raises(ValueError, match="unknown method"):
        common.method_overrides("semscale", num_train_epochs=3, deferred_fraction=0.2)
    with pytest.raises(ValueError, match="deferred_fraction"):
        common.method_overrides("ce", num_train_epochs=3, deferred_fraction=1.0)


def test_jsonl_round_trip_skips_a_truncated_last_line(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    assert common.read_jsonl(path) == []
    common.append_jsonl(path, {"a": 1, "b": [1.5, float("nan")]})
    common.append_jsonl(path, {"a": 2})
    with path.open("a") as handle:
        handle.write('{"a": 3, "b"')  # a crash mid-write
    records = common.read_jsonl(path)
    assert [r["a"] for r in records] == [1, 2] and math.isnan(records[0]["b"][1])


def test_mean_std_and_markdown_table():
    values = [0.8, 0.9, float("nan"), 0.7]
    expected = f"{statistics.mean([0.8, 0.9, 0.7]):.3f} ± {statistics.stdev([0.8, 0.9, 0.7]):.3f}"
    assert common.mean_std(values) == expected == "0.800 ± 0.100"
    assert common.mean_std([0.5]) == "0.500" and common.mean_std([]) == "n/a"
    table = common.markdown_table(["a", "b"], [[1, 2]])
    assert table.splitlines() == ["| a | b |", "|---|---:|", "| 1 | 2 |"]
    with pytest.raises(ValueError, match="align"):
        common.markdown_table(["a", "b"], [], align="l")
    assert common.settings_id({"x": 1, "y": 2}) == common.settings_id({"y": 2, "x": 1})


# ------------------------------------------------------------------------------------------------ long-tailed study
def _record(method, factor, seed, balanced, few=0.5):
    return {
        "method": method,
        "imbalance_factor": factor,
        "seed": seed,
        "accuracy": balanced,
        "balanced_accuracy": balanced,
        "acc_many": 1.0,
        "acc_medium": 0.8,
        "acc_few": few,
        "per_class_accuracy": [1.0, 0.5, 0.0],
        "class_counts": [10, 5, 1],
        "semantic_scales": [3.0, 2.0, float("nan")],
        "class_weights": [1.0, 1.0, 1.0],
    }


def test_aggregate_reports_paired_differences_and_directions():
    records = [
        _record("ce", 10.0, 0, 0.80),
        _record("ce", 10.0, 1, 0.70),
        _record("semscale_ce_p+1", 10.0, 0, 0.85, few=0.6),
        _record("semscale_ce_p+1", 10.0, 1, 0.69, few=0.4),
        _record("semscale_ce_p-1", 10.0, 0, 0.75, few=0.7),
        _record("semscale_ce_p-1", 10.0, 1, 0.71, few=0.3),
    ]
    study = long_tailed_study.StudyArguments(methods=["ce", "semscale_ce_p+1", "semscale_ce_p-1"])
    settings = {
        "profile": "exp",
        "deferred_fraction": 0.333,
        "model": {"hidden_size": 64, "num_hidden_layers": 2, "image_size": 16, "patch_size": 4},
        "training": {
            "num_train_epochs": 30,
            "per_device_train_batch_size": 32,
            "learning_rate": 3e-3,
            "weight_decay": 0.05,
            "lr_scheduler_type": "cosine",
            "semscale_refresh_steps": None,
        },
    }
    text = long_tailed_study.aggregate(records, study, settings)
    # p+1 vs ce: differences +0.05 and -0.01 -> mean +0.020, std of the two, one win and one loss
    plus_diffs = [0.05, -0.01]
    expected = f"+{statistics.mean(plus_diffs):.3f} ± {statistics.stdev(plus_diffs):.3f} | 1/1"
    row = next(line for line in text.splitlines() if line.startswith("| `semscale_ce_p+1`"))
    assert expected in row
    assert "0.770 ± 0.113" in row  # mean ± sample std of 0.85 and 0.69
    # direction row: (+1) - (-1) = +0.10 and -0.02
    direction = next(line for line in text.splitlines() if line.startswith("| 10 | ce |"))
    cells = [c.strip() for c in direction.strip("|").split("|")]
    assert cells[2] == f"+{statistics.mean([0.10, -0.02]):.3f} ± {statistics.stdev([0.10, -0.02]):.3f}"
    assert cells[3] == "1/1"
    assert cells[8] == f"+0.000 ± {statistics.stdev([-0.1, 0.1]):.3f}" and cells[9] == "1/1"  # few-shot
    # correlation table from the `ce` runs: scales [3, 2, nan] against accuracy [1, 0.5, 0] over 2 finite pairs
    assert "| 10 | scale | 1.00 ± 0.00 |" in text


def test_study_runs_resumes_and_aggregates(tmp_path, monkeypatch):
    results = tmp_path / "study"
    argv = [
        *TINY,
        f"--output_dir={tmp_path / 'out'}",
        f"--results_dir={results}",
        "--seeds=0",
        "--imbalance_factors=10",
        "--deferred_fraction=0",  # measure and weight from the first step
        "--methods",
        "semscale_ce_p-1",
    ]
    assert long_tailed_study.main(argv) == 0
    (record,) = common.read_jsonl(results / "results.jsonl")
    assert record["method"] == "semscale_ce_p-1"
    # the method measured the scales and weighted by them: larger scale, larger weight (power -1)
    scales, weights = torch.tensor(record["semantic_scales"]), torch.tensor(record["class_weights"])
    measured = torch.isfinite(scales)
    assert measured.sum() >= 2
    torch.testing.assert_close(weights[measured], scales[measured] / scales[measured].mean())
    assert (weights[~measured] == weights[measured].max()).all()  # unmeasured classes get the largest weight
    assert 0.0 <= record["balanced_accuracy"] <= 1.0 and len(record["per_class_accuracy"]) == 10
    assert record["class_counts"] == [122, 94, 73, 56, 43, 33, 26, 20, 15, 12]
    assert "| `semscale_ce_p-1` | 1 |" in (results / "tables.md").read_text()
    assert (results / "balanced_accuracy.png").stat().st_size > 0

    # resume: the finished runs are skipped, the new method runs, through the parallel path with a stand-in pool
    # that checks every job survives pickling (as it must for spawned processes); one thread, since two Trainers
    # in one process would share global state (seeds, accelerate)
    class PicklingPool(ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context=None):
            assert max_workers == 2 and mp_context.get_start_method() == "spawn"
            super().__init__(max_workers=1)

        def submit(self, fn, *args):
            fn, args = pickle.loads(pickle.dumps((fn, args)))
            return super().submit(fn, *args)

    monkeypatch.setattr(long_tailed_study, "ProcessPoolExecutor", PicklingPool)
    argv[-1:] = ["ce", "semscale_ce_p-1"]
    assert long_tailed_study.main([*argv, "--num_workers=2"]) == 0
    records = common.read_jsonl(results / "results.jsonl")
    assert sorted(r["method"] for r in records) == ["ce", "semscale_ce_p-1"]
    assert long_tailed_study.main([*argv, "--aggregate_only=true"]) == 0
    # other settings: the old results are not mixed in
    assert long_tailed_study.main([*argv, "--aggregate_only=true", "--learning_rate=0.1"]) == 1


def test_study_rejects_unknown_methods(tmp_path):
    with pytest.raises(ValueError, match="unknown methods"):
        long_tailed_study.main([f"--results_dir={tmp_path}", "--methods", "magic"])


# ------------------------------------------------------------------------------------------------ bias and marginal
def test_balanced_bias_smoke(tmp_path):
    results = tmp_path / "bias"
    argv = [*TINY, f"--output_dir={tmp_path / 'out'}", f"--results_dir={results}", "--seeds=0"]
    assert balanced_bias.main(argv) == 0
    (record,) = common.read_jsonl(results / "results.jsonl")
    assert len(set(record["class_counts"])) == 1  # sample-balanced
    assert math.isnan(record["pearson"]["count"]) and math.isnan(record["spearman"]["effective number"])
    for source in balanced_bias.SOURCES:
        assert len(record["scales"][source]) == 10 and -1.0 <= record["pearson"][source] <= 1.0
    text = (results / "tables.md").read_text()
    assert "sample-balanced" in text and "| mean ± std |" in text
    assert (results / "scale_vs_accuracy.png").stat().st_size > 0
    # a second call finds seed 0 done and only rewrites the tables
    assert balanced_bias.main(argv) == 0
    assert len(common.read_jsonl(results / "results.jsonl")) == 1


def test_marginal_effect_smoke(tmp_path):
    results = tmp_path / "marginal"
    argv = [*TINY, f"--output_dir={tmp_path / 'out'}", f"--results_dir={results}", "--repeats=2"]
    assert marginal_effect.main([*argv, "--classes", "0", "3"]) == 0
    payload = json.loads((results / "marginal_effect.json").read_text())
    assert set(payload["results"]) == set(marginal_effect.SOURCES)
    for per_class in payload["results"].values():
        assert [r["class"] for r in per_class] == [0, 3]
        for r in per_class:
            assert r["sizes"][0] == 2 and r["sizes"][-1] == payload["class_counts"][0]
            assert r["matching_beta"] == pytest.approx(math.exp(-1 / r["tau"]))
            assert set(r["effective_number_r_squared"]) == {"0.9999", "0.99"}
    assert "| pixels |" in (results / "marginal_effect.md").read_text()
    assert (results / "marginal_effect.png").stat().st_size > 0
    with pytest.raises(ValueError, match="unknown sources"):
        marginal_effect.main([*argv, "--sources", "logits"])


def test_fixed_beta_fit_equals_a_plain_least_squares_reference():
    # a curve that is exactly 5 * (1 - 0.9^m): the fit with beta 0.9 must be perfect, with 0.9999 worse
    sizes = [2, 4, 8, 16, 32]
    mean = torch.tensor([5 * (1 - 0.9**m) for m in sizes], dtype=torch.float64)
    effect = type("Effect", (), {})()
    effect.sizes, effect.mean, effect.std, effect.saturated = sizes, mean, torch.zeros(5), True
    effect.fit = common_fit = type("Fit", (), {"asymptote": 5.0, "tau": -1 / math.log(0.9)})()
    common_fit.r_squared, common_fit.m95 = 1.0, common_fit.tau * math.log(20)
    out = marginal_effect.describe(0, effect, [0.9, 0.9999])
    assert out["effective_number_r_squared"]["0.9"] == pytest.approx(1.0)
    assert out["matching_beta"] == pytest.approx(0.9)
    basis = [1 - 0.9999**m for m in sizes]
    factor = sum(b * y for b, y in zip(basis, mean.tolist())) / sum(b * b for b in basis)
    residual = sum((y - factor * b) ** 2 for b, y in zip(basis, mean.tolist()))
    total = sum((y - statistics.fmean(mean.tolist())) ** 2 for y in mean.tolist())
    assert out["effective_number_r_squared"]["0.9999"] == pytest.approx(1 - residual / total)


# --------------------------------------------------------------------------------------------------------- CIFAR-LT
@pytest.mark.parametrize(
    ("name", "label_column"),
    [("cifar10", "label"), ("cifar100", "fine_label")],
)
def test_build_cifar_splits_on_digits_with_hub_column_names(name, label_column):
    digits = load_digits_dataset(seed=0)
    renamed = digits.rename_column("image", "img")
    if label_column != "label":
        renamed = renamed.rename_column("label", label_column)
        renamed = renamed.map(lambda row: {"coarse_label": 0})  # CIFAR-100 carries a second label column
    cifar = cifar_lt.CifarArguments(dataset_name=name, imbalance_factor=20.0, data_seed_lt=1)
    splits = cifar_lt.build_cifar_splits(cifar, renamed)
    assert splits["train"].column_names == ["image", "label"] == splits["test"].column_names
    head = min(class_counts(digits["train"]))
    assert class_counts(splits["train"]) == long_tailed_counts(head, 10, 20.0)
    assert class_counts(splits["test"]) == class_counts(digits["test"])  # the test split stays balanced
    with pytest.raises(ValueError, match="dataset_name"):
        cifar_lt.build_cifar_splits(cifar_lt.CifarArguments(dataset_name="mnist"), renamed)


def test_cifar_transforms_crop_and_flip_keep_shapes_and_values():
    batch = load_digits_dataset()["test"][:6]
    train_transform, eval_transform = cifar_lt.make_transforms(8, augment=True, seed=0)
    plain = eval_transform(batch)
    augmented = train_transform(batch)
    assert augmented["pixel_values"].shape == plain["pixel_values"].shape == (6, 3, 8, 8)
    torch.testing.assert_close(augmented["labels"], plain["labels"])
    assert not torch.equal(augmented["pixel_values"], plain["pixel_values"])
    # crops of a reflect-padded image and flips only move pixels: every value comes from the original image
    for aug, orig in zip(augmented["pixel_values"], plain["pixel_values"]):
        assert set(aug.unique().tolist()) <= set(orig.unique().tolist())
    same, _ = cifar_lt.make_transforms(8, augment=False)
    torch.testing.assert_close(same(batch)["pixel_values"], plain["pixel_values"])


@pytest.mark.parametrize("model_type", ["vit", "resnet"])
def test_cifar_lt_main_runs_on_digits(tmp_path, model_type):
    digits = load_digits_dataset().rename_column("image", "img")
    argv = [
        *TINY,
        f"--output_dir={tmp_path}",
        f"--model_type={model_type}",
        "--semscale_warmup_steps=1",
        "--imbalance_factor=10",
        "--save_strategy=no",
        "--dataloader_num_workers=0",
        "--use_cpu=true",
        "--disable_tqdm=true",
    ]
    assert cifar_lt.main(argv, dataset_dict=digits) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["class_counts"] == long_tailed_counts(results["class_counts"][0], 10, 10.0)
    assert results["model"]["model_type"] == model_type and "eval_balanced_accuracy" in results["metrics"]


def test_token_classification_example_trains_a_tagger_and_prints_the_per_tag_table(tmp_path, capsys):
    import token_classification

    argv = [
        f"--output_dir={tmp_path}",
        "--num_sentences=40",
        "--hidden_size=16",
        "--num_hidden_layers=1",
        "--max_steps=4",
        "--semscale_warmup_steps=2",
        "--semscale_refresh_steps=2",
        "--disable_tqdm=true",
    ]
    assert token_classification.main(argv) == 0
    out = capsys.readouterr().out
    assert "| tag | train tokens | semantic scale | weight | token accuracy |" in out
    assert all(f"| {tag} |" in out for tag in token_classification.CONLL_TAGS)
    assert "| none (plain CE) |" in out and "entity F1" in out


def test_the_synthetic_tag_set_is_long_tailed_and_seeded():
    import token_classification

    from semscale_hf.data import count_labels

    tagger = token_classification.TaggerArguments(num_sentences=200)
    splits = token_classification.synthetic_splits(tagger)
    counts = count_labels(splits["train"], 9, ignore_index=-100)
    assert counts[0] > 0.7 * sum(counts) and counts[1] > counts[3] > counts[5] > counts[7] > 0  # B- of each type
    again = token_classification.synthetic_splits(tagger)
    assert again["train"]["labels"] == splits["train"]["labels"]
    assert all(row[0] == row[-1] == -100 for row in splits["train"]["labels"])
