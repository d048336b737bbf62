from semscale_hf.cli import main as cli_main
from semscale_hf.commands.demo import main as demo_main


def test_demo_runs_end_to_end_on_tiny_settings(tmp_path, capsys):
    argv = [
        f"--output_dir={tmp_path}",
        "--hidden_size=16",
        "--num_hidden_layers=1",
        "--max_steps=4",
        "--semscale_warmup_steps=1",
        "--semscale_refresh_steps=2",
        "--imbalance_factor=20",
    ]
    assert demo_main([*argv, "--compare_baseline=false"]) == 0
    out = capsys.readouterr().out
    assert "imbalance factor 20 (exp)" in out
    assert "| class | train count | semantic scale | weight | test accuracy |" in out
    assert "| semantic_scale |" in out and "plain CE" not in out
    assert out.count("\n| ") >= 13  # header + 10 classes + comparison rows


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert cli_main([]) == 0
    assert "demo" in capsys.readouterr().out
    assert cli_main(["frobnicate"]) == 2
