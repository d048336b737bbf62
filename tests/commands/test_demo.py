import json
import subprocess
import sys

from _helpers import hub_fixtures

from semscale_hf import __version__
from semscale_hf.cli import main as cli_main
from semscale_hf.commands.demo import build_parser
from semscale_hf.commands.demo import main as demo_main


hub_server = hub_fixtures.hub_server
hub_server_in_process = hub_fixtures.hub_server_in_process


def test_demo_runs_end_to_end_on_tiny_settings(tmp_path, capsys):
    argv = [
        f"--output_dir={tmp_path}",
        "--hidden_size=16",
        "--num-hidden-layers=1",  # dashes work as well as underscores
        "--max_steps=4",
        "--semscale_warmup_steps=1",
        "--semscale_refresh_steps=2",
        "--imbalance_factor=20",
    ]
    assert demo_main(argv) == 0  # with the plain-CE comparison (on by default)
    captured = capsys.readouterr()
    out = captured.out
    assert "imbalance factor 20 (exp)" in out
    assert "| class | train count | semantic scale | weight | test accuracy |" in out
    assert "| semantic_scale |" in out and "| none (plain CE) |" in out
    assert out.count("\n| ") >= 14  # header + 10 classes, header + both comparison rows
    # the console has the Trainer's progress bars and the summary, not the raw log dicts of every refresh ...
    assert "4/4" in captured.err
    assert "semscale/" not in out + captured.err and "{'loss'" not in out + captured.err
    # ... which are kept in the log history on disk, per-class values included
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    refreshes = [entry for entry in history if "semscale/refreshes" in entry]
    assert len(refreshes) == 2 and all("semscale/weight/0" in entry for entry in refreshes)
    baseline = tmp_path.parent / f"{tmp_path.name}-baseline"
    assert (baseline / "trainer_state.json").is_file()
    assert (baseline / "config.json").is_file()  # `semscale analyze --model` can compare both models


def test_demo_help_says_what_it_does_then_lists_its_own_options_first(capsys):
    help_text = build_parser().format_help()
    assert help_text.startswith("usage: semscale demo")
    description = " ".join(help_text.split("options:")[0].split())  # argparse wraps the lines
    assert "a small ViT trained with `SemScaleTrainer` on long-tailed digits" in description
    demo, semscale, trainer = (
        help_text.index(title)
        for title in ("demo options (data and model):", "semantic-scale options", "Trainer options")
    )
    assert demo < help_text.index("--imbalance_factor") < semscale < help_text.index("--semscale_power") < trainer
    assert help_text.index("--learning_rate") > trainer


def test_cli_lists_commands_rejects_unknown_and_prints_its_version(capsys):
    assert cli_main([]) == 0
    assert "demo" in capsys.readouterr().out
    assert cli_main(["frobnicate"]) == 2
    capsys.readouterr()
    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"semscale-hf {__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "semscale_hf", "--version"], capture_output=True, text=True, check=True
    )
    assert module.stdout.strip() == f"semscale-hf {__version__}"


def test_every_command_takes_underscores_and_dashes(tmp_path, capsys, monkeypatch):
    # install-metric took only `--modules-cache`; the command name works in both spellings too. The registration
    # itself is replaced: it imports evaluate's module package from the cache it is given, once per process.
    from semscale_hf.commands import install_metric

    caches = []
    monkeypatch.setattr(install_metric, "register_evaluate_module", lambda cache: caches.append(cache) or tmp_path)
    for command, option in [("install-metric", "--modules_cache"), ("install_metric", "--modules-cache=")]:
        argv = [command, f"{option}{tmp_path / command}"] if option.endswith("=") else [command, option, command]
        assert cli_main(argv) == 0
    assert caches == ["install-metric", str(tmp_path / "install_metric")]
    out = capsys.readouterr().out
    assert str(tmp_path) in out
    # the printed command must find the module in that cache
    assert f"Load it with: HF_MODULES_CACHE={tmp_path / 'install_metric'} HF_EVALUATE_OFFLINE=1" in out


def test_the_baseline_of_the_demo_is_not_pushed_over_the_model(hub_server_in_process, tmp_path, capsys):
    # the baseline run kept push_to_hub and hub_model_id, so its pushes went to the same repo as the model's
    argv = [f"--output_dir={tmp_path / 'demo'}", "--hidden_size=16", "--num_hidden_layers=1", "--max_steps=2"]
    argv += ["--save_strategy=steps", "--save_steps=2", "--push_to_hub", "--hub_model_id=demo-repo"]
    assert demo_main(argv) == 0
    server = hub_server_in_process
    repo = "test-user/demo-repo"
    assert server.commit_messages(repo) == ["initial commit", "Training in progress, step 2", "Model save"]
    card = server.file(repo, "README.md").data.decode()
    assert 'semscale_weighting="none"' not in card and "semantic-scale-balanced learning" in card
