"""The model card: metadata, per-class table, imbalance summary, plot, template location, the example card."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from _helpers.trainer_utils import digits_dataset, make_args, multi_hot_digits, multi_label_vit, tiny_vit
from huggingface_hub import ModelCard
from PIL import Image
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

import semscale_hf
from semscale_hf import SemScaleTrainer
from semscale_hf.hub import (
    PLOT_FILE,
    TEMPLATE_NAME,
    SemScaleCardData,
    class_accuracies_from_log_history,
    infer_task,
    read_template,
    write_model_card,
)


ROOT = Path(__file__).resolve().parents[2]
NAN = float("nan")
AUTHORS = "Ma, Yanbiao and Jiao, Licheng and Liu, Fang and Li, Yuxin and Yang, Shuyuan and Liu, Xu"


def _report(**overrides) -> SemScaleCardData:
    values = {
        "model_name": "tiny",
        "class_names": ["cat", "dog|wolf", "eel", "yak"],
        "class_counts": [50, 20, 5, 0],
        "semantic_scales": [8.0, 6.0, 4.0, NAN],
        "class_weights": [0.6, 0.8, 1.2, 1.4],
        "class_accuracies": [0.9, 0.7, 0.2, NAN],
        "eval_metrics": {
            "accuracy": 0.8123456,
            "balanced_accuracy": 0.6,
            "acc_many": NAN,
            "acc_medium": 0.8,
            "acc_few": 0.2,
            "loss": 0.5,
        },
        "eval_step": 30,
        "semscale_settings": {"semscale_power": 1.0, "semscale_weight_min": None},
        "training_state": {"stage": "balanced", "refreshes": 3},
        "hyperparameters": {"learning_rate": 0.01},
        "datasets": ["org/digits-lt"],
        "dataset_name": "Digits LT",
        "dataset_split": "test",
        "repo_id": "org/tiny",
        "framework_versions": {"transformers": "5.24.0"},
    }
    values.update(overrides)
    return SemScaleCardData(**values)


def _table(text: str, header: str) -> list[list[str]]:
    """Cells of the Markdown table whose header row starts with `header` (escaped pipes kept as `\\|`)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _bullets(text: str, heading: str) -> dict[str, str]:
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return dict(line[2:].rsplit(": ", 1) for line in section.splitlines() if line.startswith("- "))


# ------------------------------------------------------------------------------------------ metadata
def test_card_metadata_round_trips_with_model_index(tmp_path):
    card = _report().render(plot_file=PLOT_FILE)
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data

    assert data.tags[:3] == ["semscale", "long-tailed", "image-classification"]
    assert {"generated_from_trainer", "arxiv:2212.14613"} <= set(data.tags)
    assert data.pipeline_tag == "image-classification" and data.library_name == "transformers"
    assert data.datasets == ["org/digits-lt"] and data.metrics == ["accuracy"]
    results = {r.metric_name: r for r in data.eval_results}
    # NaN (no many-shot class) is left out: YAML has no portable NaN
    assert set(results) == {"Accuracy", "Balanced accuracy", "Medium-shot accuracy", "Few-shot accuracy"}
    assert (
        results["Accuracy"].metric_value == 0.8123 and results["Balanced accuracy"].metric_type == "balanced_accuracy"
    )
    assert results["Few-shot accuracy"].metric_value == 0.2
    for result in results.values():
        assert (result.task_type, result.task_name) == ("image-classification", "Image Classification")
        assert (result.dataset_type, result.dataset_name, result.dataset_split) == (
            "org/digits-lt",
            "Digits LT",
            "test",
        )
    assert data.model_name == "tiny"


def test_without_dataset_or_task_there_is_no_model_index():
    data = _report(datasets=None).card_data()
    assert data.eval_results is None and data.datasets is None
    data = _report(task=None).card_data()
    assert data.eval_results is None and data.pipeline_tag is None
    assert "image-classification" not in data.tags
    card = _report(task="text-classification", tags=["custom", "semscale"]).render()
    assert card.data.tags.count("semscale") == 1 and "custom" in card.data.tags
    assert "AutoModelForSequenceClassification" in card.text


def test_report_is_validated():
    with pytest.raises(ValueError, match="one entry per class"):
        _report(class_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="task must be one of"):
        _report(task="object-detection")


# ------------------------------------------------------------------------------------------- content
def test_per_class_table_results_and_citation():
    text = _report().render(plot_file=PLOT_FILE).text
    assert _table(text, "| class |") == [
        ["cat", "50", "8", "0.600", "0.900"],
        ["dog\\|wolf", "20", "6", "0.800", "0.700"],
        ["eel", "5", "4", "1.200", "0.200"],
        ["yak", "0", "n/a", "1.400", "n/a"],
    ]
    assert _table(text, "| metric |") == [
        ["Accuracy", "0.8123"],
        ["Balanced accuracy", "0.6000"],
        ["Many-shot accuracy", "n/a"],
        ["Medium-shot accuracy", "0.8000"],
        ["Few-shot accuracy", "0.2000"],
        ["Loss", "0.5000"],
    ]
    assert "Last evaluation (step 30)" in text
    assert _table(text, "| setting |") == [["`semscale_power`", "`1.0`"], ["`semscale_weight_min`", "not set"]]
    assert "State at the end of training: stage balanced; refreshes 3." in text
    assert f"![Semantic scale vs per-class accuracy]({PLOT_FILE})" in text
    assert (
        'from_pretrained("org/tiny")' in text and 'hf_hub_download("org/tiny", "semscale_state.safetensors")' in text
    )
    assert AUTHORS in text and "Delving into Semantic Scale Imbalance" in text
    assert "ICLR" in text and "2212.14613" in text


def test_imbalance_summary_matches_plain_reference():
    bullets = _bullets(_report().render().text, "### Imbalance summary")
    scales, accuracies = [8.0, 6.0, 4.0], [0.9, 0.7, 0.2]  # the measured classes
    mean = sum(scales) / 3
    cv = math.sqrt(sum((s - mean) ** 2 for s in scales) / 3) / mean
    shares = [s / sum(scales) for s in scales]
    kl = sum(p * math.log(3 * p) for p in shares)
    mean_a = sum(accuracies) / 3
    pearson = sum((s - mean) * (a - mean_a) for s, a in zip(scales, accuracies)) / math.sqrt(
        sum((s - mean) ** 2 for s in scales) * sum((a - mean_a) ** 2 for a in accuracies)
    )
    assert bullets["Classes measured"] == "3 of 4"
    # 50 / 5: the empty class is left out, and the card says so
    assert bullets["Largest over smallest training count"] == "10.000 (1 class without training samples left out)"
    assert bullets["Largest over smallest semantic scale"] == "2.000"
    assert bullets["Coefficient of variation of the scales"] == f"{cv:.3f}"
    assert bullets["KL divergence of the scale shares from uniform (nats)"] == f"{kl:.4f}"
    assert bullets["Class weights"] == "0.600 to 1.400"
    assert bullets["Correlation of semantic scale with accuracy (Pearson / Spearman)"] == f"{pearson:.3f} / 1.000"

    without_accuracy = _bullets(_report(class_accuracies=None).render().text, "### Imbalance summary")
    assert not any(key.startswith("Correlation") for key in without_accuracy)


def test_long_class_lists_are_cut_with_a_note():
    n = 130
    report = _report(
        class_names=[f"c{i}" for i in range(n)],
        class_counts=[10] * n,
        semantic_scales=[1.0] * n,
        class_weights=[1.0] * n,
        class_accuracies=None,
    )
    text = report.render().text
    assert len(_table(text, "| class |")) == 100
    assert "*The first 100 of 130 classes; every class's values are in `semscale_state.safetensors`.*" in text


# ---------------------------------------------------------------------------------------------- plot
def test_plot_is_a_png_and_its_absence_is_explained(tmp_path, monkeypatch):
    report = _report()
    assert report.plot_skip_reason() is None
    report.save_plot(tmp_path / "plot.png")
    with Image.open(tmp_path / "plot.png") as image:
        assert image.format == "PNG" and image.size == (720, 540)

    no_accuracy = _report(class_accuracies=None)
    assert "no per-class accuracy" in no_accuracy.plot_skip_reason()
    assert "*No plot: no per-class accuracy was logged" in no_accuracy.render().text
    with pytest.raises(RuntimeError, match="no per-class accuracy"):
        no_accuracy.save_plot(tmp_path / "never.png")
    unmeasured = _report(semantic_scales=[NAN] * 4)
    assert unmeasured.plot_skip_reason() == "no class has both a measured semantic scale and an accuracy"

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the "plots" extra were not installed
    reason = report.plot_skip_reason()
    assert reason.startswith("matplotlib is not installed")
    assert f"*No plot: {reason}.*" in report.render().text


# ----------------------------------------------------------------------------------------- from logs
def test_class_accuracies_come_from_the_last_complete_evaluation():
    history = [
        {"loss": 1.0, "step": 1},
        {"eval_acc_class_0": 0.1, "eval_acc_class_1": 0.2, "step": 2},
        {"eval_acc_class_0": 0.5, "eval_acc_class_1": 0.6, "step": 4},
        {"eval_acc_class_0": 0.9, "step": 5},  # incomplete (another metric prefix, say): skipped
        {"loss": 0.3, "step": 6},
    ]
    assert class_accuracies_from_log_history(history, 2) == [0.5, 0.6]
    assert class_accuracies_from_log_history(history, 3) is None
    assert class_accuracies_from_log_history([], 2) is None


def test_task_comes_from_the_model_class():
    assert infer_task(tiny_vit()) == "image-classification"
    config = BertConfig(
        vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, num_labels=3
    )
    assert infer_task(BertForSequenceClassification(config)) == "text-classification"
    assert infer_task(BertForTokenClassification(config)) == "token-classification"

    class MyNetForAudioClassification(torch.nn.Module):
        pass

    assert infer_task(MyNetForAudioClassification()) == "audio-classification"
    assert infer_task(torch.nn.Linear(2, 2)) is None


# ------------------------------------------------------------------------------------------ from a trainer
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("card") / "out"
    data = digits_dataset(counts=[12, 6, 4, 2])
    args = make_args(output_dir, max_steps=6, eval_strategy="steps", eval_steps=6)
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    return trainer


def test_trainer_card_reports_its_final_state(trained, tmp_path):
    trained.create_model_card(dataset="digits-lt", license="apache-2.0")
    output_dir = Path(trained.args.output_dir)
    text = (output_dir / "README.md").read_text(encoding="utf-8")
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.license == "apache-2.0" and card.data.model_name == "out"
    evaluation = [entry for entry in trained.state.log_history if "eval_accuracy" in entry][-1]
    accuracy = next(r for r in card.data.eval_results if r.metric_name == "Accuracy")
    assert accuracy.metric_value == round(evaluation["eval_accuracy"], 4)

    rows = _table(text, "| class |")
    assert [row[0] for row in rows] == [f"LABEL_{c}" for c in range(4)]
    assert [int(row[1]) for row in rows] == [12, 6, 4, 2]
    assert [row[2] for row in rows] == [format(s, ".4g") for s in trained.semantic_scales.tolist()]
    assert [row[3] for row in rows] == [format(w, ".3f") for w in trained.class_weights.tolist()]
    assert [row[4] for row in rows] == [format(evaluation[f"eval_acc_class_{c}"], ".3f") for c in range(4)]
    assert f"refreshes {trained.balancer.num_refreshes}" in text and "warm-up steps 2" in text
    assert "`semscale_refresh_steps` | `3`" in text
    assert "- learning_rate: 0.01" in text and "- torch " in text
    with Image.open(output_dir / PLOT_FILE) as image:
        assert image.format == "PNG"


def test_card_without_matplotlib_drops_a_stale_plot(trained, tmp_path, monkeypatch):
    (tmp_path / PLOT_FILE).write_bytes(b"old")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    card = write_model_card(trained, tmp_path)
    assert not (tmp_path / PLOT_FILE).exists()
    assert "*No plot: matplotlib is not installed" in card.text
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == str(card)


def test_card_before_any_evaluation(tmp_path):
    trainer = SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path), train_dataset=digits_dataset())
    card = write_model_card(trainer, tmp_path / "card")
    assert "No evaluation was run" in card.text and card.data.eval_results is None
    assert "stage warmup; refreshes 0" in card.text
    assert _table(card.text, "| class |")[0][2:] == ["n/a", "1.000", "n/a"]
    assert not (tmp_path / "card" / PLOT_FILE).exists()


def test_the_card_names_the_weighting_the_loss_used():
    # a baseline run (weighting "none" or by counts) must not be described as semantic-scale weighted
    default = _report().render().text
    assert "the loss of each class is re-weighted by the class's *semantic scale*" in default
    unweighted = _report(semscale_settings={"semscale_weighting": "none"}).render().text
    assert "re-weighted by the class's *semantic scale*" not in unweighted
    assert "the loss is not re-weighted" in unweighted and "| `semscale_weighting` | `none` |" in unweighted
    by_counts = _report(semscale_settings={"semscale_weighting": "inverse_frequency"}).render().text
    assert "re-weighted by the class's *semantic scale*" not in by_counts
    assert "re-weighted by the inverse of the class's training count" in by_counts


def test_a_card_of_several_evaluation_sets_reports_the_first(tmp_path):
    # eval_dataset={"val": ..., "test": ...} logs eval_val_* and eval_test_*: the card showed no evaluation at all
    data = digits_dataset(counts=[12, 6, 4, 2])
    args = make_args(tmp_path / "out", max_steps=6, eval_strategy="steps", eval_steps=6)
    trainer = SemScaleTrainer(
        model=tiny_vit(), args=args, train_dataset=data, eval_dataset={"val": data, "test": data.select(range(8))}
    )
    trainer.train()
    card = write_model_card(trainer, tmp_path / "card", dataset="digits-lt")
    evaluation = [entry for entry in trainer.state.log_history if "eval_val_accuracy" in entry][-1]
    assert "No evaluation was run" not in card.text and "Last evaluation on `val` (step 6)" in card.text
    accuracy = next(r for r in card.data.eval_results if r.metric_name == "Accuracy")
    assert accuracy.metric_value == round(evaluation["eval_val_accuracy"], 4)
    rows = _table(card.text, "| class |")
    assert [row[4] for row in rows] == [format(evaluation[f"eval_val_acc_class_{c}"], ".3f") for c in range(4)]


# -------------------------------------------------------------------------------------------- template
def test_editable_install_reads_the_template_from_model_cards():
    assert not (Path(semscale_hf.__file__).parent / "templates").exists()  # the source tree has no copy
    assert read_template() == (ROOT / "model_cards" / TEMPLATE_NAME).read_text(encoding="utf-8")


def test_wheel_ships_the_template(tmp_path):
    """Builds the wheel (hatchling, as `pip wheel` gets it) and renders a card from the installed package."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0 and "No matching distribution found for hatchling" in build.stderr:
        pytest.skip("the hatchling build backend cannot be installed here (no package index)")
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("semscale_hf-*.whl")
    template = (ROOT / "model_cards" / TEMPLATE_NAME).read_bytes()
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(f"semscale_hf/templates/{TEMPLATE_NAME}") == template
        assert not any(name.startswith("model_cards/") for name in archive.namelist())

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    code = """
from pathlib import Path
import semscale_hf
import semscale_hf.hub as m
packaged = Path(semscale_hf.__file__).parent / "templates" / m.TEMPLATE_NAME
assert m.read_template() == packaged.read_text(encoding="utf-8")
report = m.SemScaleCardData(model_name="m", class_names=["a", "b"], class_counts=[2, 1], semantic_scales=[2.0, 1.0],
                          class_weights=[0.5, 1.5])
print(m.__file__, report.render().data.tags[0])
"""
    # the working directory is tmp_path, not the repository, so `import semscale_hf` finds only the installed copy
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    module_file, first_tag = result.stdout.split()
    assert Path(module_file).is_relative_to(site) and first_tag == "semscale"


# ------------------------------------------------------------------------------------------ example card
def test_example_card_is_valid_and_follows_the_template():
    path = ROOT / "model_cards" / "example_digits_vit.md"
    card = ModelCard.load(path)
    assert {"semscale", "long-tailed", "image-classification"} <= set(card.data.tags)
    assert card.data.pipeline_tag == "image-classification" and card.data.datasets == ["digits-lt"]
    assert {r.metric_name for r in card.data.eval_results} >= {"Accuracy", "Balanced accuracy"}
    image = re.search(r"!\[Semantic scale vs per-class accuracy\]\(([^)]+)\)", card.text).group(1)
    with Image.open(path.parent / image) as png:
        assert png.format == "PNG"
    assert len(_table(card.text, "| class |")) == 10
    # same sections, in the same order, as a fresh render: the example follows template changes
    headings = [line for line in card.text.splitlines() if line.startswith("#")]
    assert headings[1:] == [line for line in _report().render().text.splitlines() if line.startswith("#")][1:]


def test_a_multi_label_card_shows_average_precision_per_class(tmp_path):
    output_dir = tmp_path / "out"
    data = multi_hot_digits()
    args = make_args(output_dir, max_steps=6, eval_strategy="steps", eval_steps=6)
    trainer = SemScaleTrainer(model=multi_label_vit(), args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    trainer.create_model_card(dataset="digits-multi-hot")
    card = ModelCard.load(output_dir / "README.md")
    last_eval = [e for e in trainer.state.log_history if "eval_mean_average_precision" in e][-1]
    assert "| class | training samples | final scale | final weight | average precision |" in card.text
    assert f"| Mean average precision | {last_eval['eval_mean_average_precision']:.4f} |" in card.text
    assert "Correlation of semantic scale with average precision" in card.text
    assert f"| {last_eval['eval_ap_class_0']:.3f} |" in card.text
    assert "Ap class" not in card.text and card.data.metrics is None
    names = {r.metric_name for r in card.data.eval_results}
    assert "Mean average precision" in names and "Accuracy" not in names
