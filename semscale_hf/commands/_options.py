"""Option spelling shared by the `semscale` commands: underscores and dashes both work, as with `HfArgumentParser`."""

from __future__ import annotations


__all__ = ["dashed_options"]


def dashed_options(argv: list[str]) -> list[str]:
    """`--output_dir x` and `--output_dir=x` as `--output-dir`, for parsers whose options are spelt with dashes."""
    converted = []
    for arg in argv:
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            arg = name.replace("_", "-") + sep + value
        converted.append(arg)
    return converted
