"""Evaluation helpers, the semantic-scale report and its plots, feature extraction and `semscale analyze`."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from _helpers.reference import reference_class_scales, reference_weights

from semscale_hf.analysis.evaluation import macro_f1, many_medium_few_accuracy, per_class_accuracy, shot_groups
from semscale_hf.analysis.extraction import ExtractedFeatures, extract_features, load_features, save_features
from semscale_hf.analysis.report import SemanticScaleReport
from semscale_hf.commands.analyze import analyze_main


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- evaluation helpers -------------------------------------------------------------------------------------------


def test_per_class_accuracy_matches_a_loop():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (200,), generator=generator)
    predictions = torch.randint(0, 5, (200,), generator=generator)
    labels[:7] = -100  # ignored rows
    got = per_class_accuracy(predictions, labels, num_classes=6)
    for c in range(5):
        rows = [i for i in range(200) if labels[i] == c]
        assert got[c].item() == pytest.approx(sum(int(predictions[i] == c) for i in rows) / len(rows), abs=1e-15)
    assert math.isnan(got[5])  # no examples: NaN, not 0


def test_per_class_accuracy_takes_logits_and_rejects_float_ids():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert per_class_accuracy(logits, torch.tensor([0, 0, 1]), 2).tolist() == [0.5, 0.0]
    with pytest.raises(TypeError, match="integer class ids"):
        per_class_accuracy(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="logits have 2 columns but num_classes=3"):
        per_class_accuracy(logits, torch.tensor([0, 0, 1]), 3)
    with pytest.raises(ValueError, match="outside"):
        per_class_accuracy(torch.tensor([0, 1]), torch.tensor([0, 2]), 2)


def test_macro_f1_skips_ignored_labels():
    predicted, labels = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([0, 1, -100, 0, -100])
    kept = labels != -100
    assert macro_f1(predicted, labels, 2) == macro_f1(predicted[kept], labels[kept], 2) == 1.0


def test_shot_groups_canonical_boundaries():
    assert shot_groups([1000, 101, 100, 50, 20, 19, 1, 0]) == [
        "many",
        "many",
        "medium",
        "medium",
        "medium",
        "few",
        "few",
        "few",
    ]
    assert shot_groups(torch.tensor([30, 5]), many_above=20, few_below=10) == ["many", "few"]
    with pytest.raises(ValueError, match="non-negative"):
        shot_groups([3, -1])
    with pytest.raises(ValueError, match="whole numbers"):
        shot_groups([3.5, 1.0])


def test_many_medium_few_accuracy_is_the_mean_over_classes_of_each_group():
    accuracy = [0.9, 0.8, 0.6, 0.4, float("nan"), 0.1]
    counts = [500, 200, 60, 20, 10, 3]
    got = many_medium_few_accuracy(accuracy, counts)
    assert got == pytest.approx({"many": 0.85, "medium": 0.5, "few": 0.1})
    assert math.isnan(many_medium_few_accuracy([0.5, 0.7], [150, 120])["few"])  # empty group
    with pytest.raises(ValueError, match="one entry per class"):
        many_medium_few_accuracy([0.5], [10, 20])


# --- report -------------------------------------------------------------------------------------------------------


def _features(seed=0, counts=(60, 40, 25, 12, 1), dim=6):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    spread = torch.linspace(0.5, 2.0, len(counts))[labels][:, None]
    features = torch.randn(len(labels), dim, generator=generator, dtype=torch.float64) * spread
    predictions = torch.where(torch.rand(len(labels), generator=generator) < 0.6, labels, 0)
    return features, labels, predictions


TRAIN_COUNTS = [400, 150, 60, 20, 5]


@pytest.fixture(scope="module")
def report():
    features, labels, predictions = _features()
    return SemanticScaleReport.from_features(
        features,
        labels,
        predictions=predictions,
        train_counts=TRAIN_COUNTS,
        class_names=["zero", "one", "two", "three", "four|pipe"],
        marginal_classes=[0, 3],
        marginal_repeats=3,
    )


def test_report_rows_match_the_references(report):
    features, labels, predictions = _features()
    scales = reference_class_scales(features.numpy(), labels.numpy(), 5)
    rows = report.classes
    assert [r.count for r in rows] == [60, 40, 25, 12, 1]
    assert [r.train_count for r in rows] == TRAIN_COUNTS
    assert [r.group for r in rows] == ["many", "many", "medium", "medium", "few"]
    np.testing.assert_allclose([r.scale for r in rows[:4]], scales[:4], rtol=1e-10)
    assert rows[4].scale is None and rows[4].normalized_scale is None  # one example: unmeasured
    np.testing.assert_allclose([r.normalized_scale for r in rows[:4]], scales[:4] / scales[:4].max(), rtol=1e-10)
    np.testing.assert_allclose([r.weight for r in rows], reference_weights(scales), rtol=1e-10)
    accuracy = [float((predictions[labels == c] == c).double().mean()) for c in range(5)]
    np.testing.assert_allclose([r.accuracy for r in rows], accuracy, rtol=1e-12)
    assert report.summary["max_min_ratio"] == pytest.approx(scales[:4].max() / scales[:4].min())
    assert report.summary["accuracy"] == pytest.approx(float((predictions == labels).double().mean()))
    assert report.group_accuracy == pytest.approx(
        {"many": np.mean(accuracy[:2]), "medium": np.mean(accuracy[2:4]), "few": accuracy[4]}
    )
    for key in ["pearson_scale_accuracy", "spearman_count_accuracy", "pearson_effective_number_accuracy"]:
        assert key in report.summary
    assert sorted(report.marginal_effects) == [0, 3]
    assert report.marginal_effects[0].sizes[-1] == 60


def test_markdown_has_every_section_and_row(report):
    text = report.to_markdown()
    for heading in ["# Semantic scale report", "## Summary", "## Per-class", "## Marginal effect"]:
        assert heading in text
    header = "| Class | Name | Count | Train count | Scale (bits) | Normalised scale | Weight | Accuracy | Group |"
    assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:].isdigit()]
    assert len(rows) == 5 + 2  # per-class rows + marginal-effect rows
    assert "| 4 | four\\|pipe | 1 | 5 | – | – |" in text  # unmeasured class, escaped pipe
    assert "| Many-shot accuracy (2 classes) |" in text


def test_json_is_strict_and_round_trips(report):
    text = report.to_json()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert data["classes"][4]["scale"] is None and data["classes"][0]["group"] == "many"
    assert data["settings"]["alpha"] == "dim" and data["settings"]["num_classes"] == 5
    again = SemanticScaleReport.from_dict(data)
    assert again.to_dict() == report.to_dict()
    assert again.to_markdown() == report.to_markdown()


def test_report_without_predictions_or_counts():
    features, labels, _ = _features(1, counts=(30, 30, 30))
    report = SemanticScaleReport.from_features(features, labels, marginal_classes="auto", marginal_repeats=2)
    assert not report.has_accuracy and report.group_accuracy is None
    assert all(row.group is None and row.accuracy is None for row in report.classes)
    text = report.to_markdown()
    assert "Accuracy" not in text and "Group" not in text and "Train count" not in text
    assert len(report.marginal_effects) >= 1
    assert SemanticScaleReport.from_features(features, labels, marginal_classes=None).marginal_effects == {}


def test_report_rejects_bad_input():
    features, labels, _ = _features(2, counts=(10, 10))
    with pytest.raises(ValueError, match="train_counts has 3 entries but there are 2 classes"):
        SemanticScaleReport.from_features(features, labels, train_counts=[5, 5, 5], num_classes=2)
    with pytest.raises(ValueError, match="class_names has 1 entries"):
        SemanticScaleReport.from_features(features, labels, class_names=["a"])
    with pytest.raises(ValueError, match="marginal class 7 is outside"):
        SemanticScaleReport.from_features(features, labels, marginal_classes=[7])
    with pytest.raises(TypeError, match="integer"):
        SemanticScaleReport.from_features(features, labels.double())
    with pytest.raises(ValueError, match="NaN"):
        SemanticScaleReport.from_features(features.fill_(float("nan")), labels)


def test_report_with_every_label_ignored_or_with_logits():
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(30, 4, generator=generator)
    with pytest.raises(ValueError, match=r"every label is -100 \(ignored\)"):
        SemanticScaleReport.from_features(features, torch.full((30,), -100))
    labels, logits = torch.arange(30) % 3, torch.randn(30, 4, generator=generator)
    report = SemanticScaleReport.from_features(features, labels, predictions=logits, marginal_classes=None)
    assert report.settings["num_classes"] == 4  # from the logits' width: class 3 is predicted, never labelled
    assert report.classes[3].count == 0 and report.classes[3].scale is None and report.classes[3].accuracy is None
    assert report.summary["accuracy"] == pytest.approx(float((logits.argmax(-1) == labels).double().mean()))


def test_save_writes_markdown_json_and_readable_pngs(report, tmp_path):
    written = report.save(tmp_path / "out")
    assert sorted(written) == ["json", "marginal_effect", "markdown", "scale_vs_accuracy", "scales_and_weights"]
    for kind, path in written.items():
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC, kind
    assert json.loads(written["json"].read_text()) == report.to_dict()
    assert written["markdown"].read_text() == report.to_markdown()


def test_save_without_plots_and_without_matplotlib(report, tmp_path, monkeypatch):
    written = report.save(tmp_path / "no_plots", plots=False)
    assert sorted(written) == ["json", "markdown"]
    for module in ["matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"]:
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail, as if not installed
    with pytest.raises(ImportError, match=r"pip install 'semscale-hf\[plots\]'"):
        report.save(tmp_path / "missing")


def test_plots_use_no_pyplot_state(report, tmp_path):
    from semscale_hf.analysis.plots import plot_marginal_effects, plot_scale_vs_accuracy

    figure = plot_scale_vs_accuracy(report, tmp_path / "scatter.png")
    assert "Pearson r" in figure.axes[0].get_title()
    assert len(plot_marginal_effects(report).axes[0].lines) >= 2  # a fitted curve per class
    if "matplotlib.pyplot" in sys.modules:  # our figures never register with pyplot
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
    no_accuracy = SemanticScaleReport.from_features(*_features(3, counts=(20, 20))[:2], marginal_classes=None)
    with pytest.raises(ValueError, match="build it with predictions"):
        plot_scale_vs_accuracy(no_accuracy)
    with pytest.raises(ValueError, match="no marginal-effect curves"):
        plot_marginal_effects(no_accuracy)


# --- feature extraction and `semscale analyze` ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory):
    from _helpers.trainer_utils import tiny_vit

    directory = tmp_path_factory.mktemp("tiny_vit")
    tiny_vit(num_labels=10).save_pretrained(directory)  # 1 x 8 x 8 images, hidden size 16
    return directory


def test_extract_features_returns_the_head_input(tiny_vit_dir):
    from transformers import ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(tiny_vit_dir)
    model.train()
    pixels = torch.randn(6, 1, 8, 8)
    batches = [{"pixel_values": pixels[:4], "labels": torch.arange(4)}, {"pixel_values": pixels[4:], "labels": [4, 5]}]
    extracted = extract_features(model, batches, progress=False)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        outputs = model(pixel_values=pixels, output_hidden_states=True)
        cls_token = model.vit.layernorm(outputs.hidden_states[-1])[:, 0]
    torch.testing.assert_close(extracted.features, cls_token)
    torch.testing.assert_close(model.classifier(extracted.features), outputs.logits)
    assert extracted.labels.tolist() == list(range(6))
    assert extracted.predictions.tolist() == outputs.logits.argmax(-1).tolist()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_features_file_round_trip(tmp_path, suffix):
    features, labels, predictions = _features(4, counts=(5, 5))
    saved = ExtractedFeatures(features.float(), labels, predictions, torch.tensor([50, 5]))
    loaded = load_features(save_features(tmp_path / f"features{suffix}", saved))
    for name in ["features", "labels", "predictions", "train_counts"]:
        torch.testing.assert_close(getattr(loaded, name), getattr(saved, name))
    with pytest.raises(ValueError, match="use a .safetensors or .npz suffix"):
        save_features(tmp_path / "features.pt", saved)


def test_analyze_from_a_features_file(tmp_path, capsys):
    features, labels, predictions = _features(5)
    path = save_features(tmp_path / "f.npz", ExtractedFeatures(features.float(), labels, predictions))
    out = tmp_path / "report"
    argv = ["--features", str(path), "--train-counts", ",".join(map(str, TRAIN_COUNTS)), "--output-dir", str(out)]
    assert analyze_main([*argv, "--marginal-classes", "0,2", "--power", "0.5", "--no-plots"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert [row["group"] for row in data["classes"]] == ["many", "many", "medium", "medium", "few"]
    assert data["settings"]["power"] == 0.5 and sorted(data["marginal_effects"]) == ["0", "2"]
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    assert "scale imbalance ratio" in capsys.readouterr().out
    # underscores work too (the style of `semscale demo` and HfArgumentParser), also with "="
    underscored = tmp_path / "underscored"
    argv = [
        "--features",
        str(path),
        f"--train_counts={','.join(map(str, TRAIN_COUNTS))}",
        "--output_dir",
        str(underscored),
    ]
    assert analyze_main([*argv, "--marginal_classes", "0,2", "--power", "0.5", "--no_plots"]) == 0
    assert json.loads((underscored / "report.json").read_text()) == data


def test_analyze_extracts_features_from_a_saved_model_and_the_digits(tiny_vit_dir, tmp_path, capsys):
    out = tmp_path / "digits"
    argv = ["--model", str(tiny_vit_dir), "--dataset", "digits", "--imbalance-factor", "10", "--limit", "120"]
    assert analyze_main([*argv, "--output-dir", str(out), "--batch-size", "50", "--marginal-repeats", "2"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["settings"]["num_samples"] == 120 and data["settings"]["feature_dim"] == 16
    # training counts come from the long-tailed train split (load_long_tailed_digits, imbalance factor 10)
    assert [row["train_count"] for row in data["classes"]] == [122, 94, 73, 56, 43, 33, 26, 20, 15, 12]
    assert {row["group"] for row in data["classes"]} == {"many", "medium", "few"}
    assert sum(row["count"] for row in data["classes"]) == 120
    assert all(row["accuracy"] is not None for row in data["classes"] if row["count"])
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["marginal_effect.png", "scale_vs_accuracy.png", "scales_and_weights.png"]
    assert "Extracting features (test)" in capsys.readouterr().err  # the tqdm progress bar


def test_analyze_reads_a_saved_dataset_and_an_image_folder(tiny_vit_dir, tmp_path):
    import datasets
    from PIL import Image

    from semscale_hf.data import load_digits_dataset

    splits = load_digits_dataset()
    small = datasets.DatasetDict(
        {"train": splits["train"].select(range(80)), "test": splits["test"].select(range(40))}
    )
    small = small.rename_column("image", "img")  # a non-default column name is detected by its Image feature
    small.save_to_disk(tmp_path / "saved")
    out = tmp_path / "from_disk"
    common = ["--model", str(tiny_vit_dir), "--no-plots", "--no-progress", "--marginal-classes", "none"]
    assert analyze_main([*common, "--dataset", str(tmp_path / "saved"), "--output-dir", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["settings"]["num_samples"] == 40
    want = np.bincount(list(small["train"]["label"]), minlength=10).tolist()
    assert [row["train_count"] for row in data["classes"]] == want

    root = tmp_path / "folder"
    taken = {}
    for image, label in zip(small["test"]["img"], small["test"]["label"]):
        if taken.get(label, 0) < 2:  # two images of each digit, in folders digit0 ... digit9
            (root / f"digit{label}").mkdir(parents=True, exist_ok=True)
            image.save(root / f"digit{label}" / f"{label}_{taken.get(label, 0)}.png")
            taken[label] = taken.get(label, 0) + 1
    Image.new("L", (8, 8)).save(root / "digit0" / "extra.png")
    out = tmp_path / "from_folder"
    argv = [*common, "--dataset", str(root), "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(out)]
    assert analyze_main(argv) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["settings"]["num_samples"] == 2 * len(taken) + 1
    assert [row["name"] for row in data["classes"]] == [f"digit{c}" for c in range(10)]
    assert data["classes"][0]["count"] == 3 and data["classes"][0]["train_count"] is None  # one split only


def test_analyze_reports_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        analyze_main(["--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "pass either --features FILE, or --model DIR with --dataset" in capsys.readouterr().err
    assert analyze_main(["--features", str(tmp_path / "missing.npz"), "--output-dir", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    path = save_features(tmp_path / "f.npz", ExtractedFeatures(*_features(6, counts=(5, 5))[:2]))
    assert analyze_main(["--features", str(path), "--train-counts", "1,x", "--output-dir", str(tmp_path)]) == 1
    assert "comma-separated integers" in capsys.readouterr().err
    assert analyze_main(["--model", str(tmp_path), "--dataset", "digits", "--output-dir", str(tmp_path)]) == 1
    assert "saved with save_pretrained" in capsys.readouterr().err
