"""The `semscale` command (also `python -m semscale_hf`): `demo`, `analyze` and `install-metric`."""

from __future__ import annotations

import importlib
import sys


# subcommand -> (module, function, one-line help); modules are imported only when their command runs
COMMANDS = {
    "demo": (
        "semscale_hf.commands.demo",
        "main",
        "train a small ViT with SemScaleTrainer on long-tailed digits (the main job)",
    ),
    "analyze": (
        "semscale_hf.commands.analyze",
        "analyze_main",
        "per-class semantic-scale report and plots for a model and data",
    ),
    "install-metric": (
        "semscale_hf.commands.install_metric",
        "install_metric_main",
        'make evaluate.load("semantic_scale") work offline (one-time)',
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        from . import __version__

        print(f"semscale-hf {__version__}")
        return 0
    if argv and argv[0].replace("_", "-") in COMMANDS:  # `install_metric` as well as `install-metric`
        argv[0] = argv[0].replace("_", "-")
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        lines = [
            "usage: semscale [--version] COMMAND [options]   (semscale COMMAND --help for its options)",
            "",
            "Semantic-scale-balanced training for Hugging Face transformers (also: python -m semscale_hf).",
            "",
            "commands:",
        ]
        lines += [f"  {name:<16}{help_text}" for name, (_, _, help_text) in COMMANDS.items()]
        print("\n".join(lines))
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module_name, function_name, _ = COMMANDS[argv[0]]
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
