"""`semscale analyze` options: the digits split it measures, and arguments refused before any work."""

import argparse

import pytest
import torch

from semscale_hf.analysis.extraction import ExtractedFeatures, save_features
from semscale_hf.commands import analyze
from semscale_hf.data import load_long_tailed_digits


def _features_file(tmp_path, num_classes=3, per_class=6):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    features = torch.randn(len(labels), 4, generator=generator)
    return str(save_features(tmp_path / "f.safetensors", ExtractedFeatures(features, labels)))


def test_the_subset_seed_does_not_move_the_digits_split():
    # --seed drew the train/test split too: with --seed 1 a third of the test images had trained the demo's model
    args = argparse.Namespace(dataset="digits", imbalance_factor=10.0, profile="exp", seed=1, data_seed=0)
    splits = analyze._load_splits(args)
    want = load_long_tailed_digits(imbalance_factor=10.0, seed=0)
    assert splits["test"]["label"] == want["test"]["label"]
    assert splits["test"]["image"] == want["test"]["image"]
    parsed = analyze.build_analyze_parser().parse_args(["--features", "f", "--output-dir", "o"])
    assert parsed.data_seed == 0 and parsed.profile == "exp"


def test_a_limit_below_one_is_refused(tmp_path, capsys):
    path = _features_file(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        analyze.analyze_main(["--features", path, "--limit", "-5", "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "--limit must be at least 1, got -5" in capsys.readouterr().err


def test_train_counts_shorter_than_the_classes_are_named(tmp_path, capsys):
    path = _features_file(tmp_path)  # classes 0, 1, 2
    argv = ["--features", path, "--train-counts", "5,5", "--output-dir", str(tmp_path / "out"), "--no-plots"]
    assert analyze.analyze_main(argv) == 1
    assert "train_counts has 2 entries but there are 3 classes" in capsys.readouterr().err
    # longer counts are fine: classes without examples in the features are reported unmeasured
    argv = ["--features", path, "--train-counts", "5,5,5,5", "--output-dir", str(tmp_path / "out"), "--no-plots"]
    assert analyze.analyze_main(argv) == 0
