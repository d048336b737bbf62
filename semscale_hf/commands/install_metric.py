"""`semscale install-metric`: registers the `semantic_scale` evaluate module for offline loading by name."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..metrics.loading import METRIC_NAME, register_evaluate_module
from ._options import dashed_options


__all__ = ["build_install_metric_parser", "install_metric_main", "run_install_metric"]

_INSTALL_DESCRIPTION = (
    'Register the semantic_scale evaluate module so that evaluate.load("semantic_scale") works offline '
    "(writes one small file into evaluate's modules cache)."
)


def build_install_metric_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Adds the `semscale install-metric` options to `parser` (a new parser by default) and returns it."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="semscale install-metric", description=_INSTALL_DESCRIPTION)
    parser.add_argument(
        "--modules-cache",
        default=None,
        help="evaluate's modules cache (default: $HF_MODULES_CACHE, else $HF_HOME/modules)",
    )
    return parser


def install_metric_main(argv: list[str] | None = None) -> int:
    """Entry point of `semscale install-metric`; returns the exit code."""
    args = build_install_metric_parser().parse_args(dashed_options(sys.argv[1:] if argv is None else argv))
    return run_install_metric(args)


def run_install_metric(args: argparse.Namespace) -> int:
    """Runs `semscale install-metric` on parsed arguments; returns the exit code."""
    script = register_evaluate_module(args.modules_cache)
    print(f"Registered the {METRIC_NAME} evaluate module at {script}")
    # evaluate finds a module in another cache only through HF_MODULES_CACHE
    cache = f"HF_MODULES_CACHE={shlex.quote(str(args.modules_cache))} " if args.modules_cache else ""
    print(f"Load it with: {cache}HF_EVALUATE_OFFLINE=1 python -c 'import evaluate; evaluate.load(\"{METRIC_NAME}\")'")
    return 0
