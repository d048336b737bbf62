"""The `semantic_scale` evaluate module shipped with semscale-hf, and the plain function behind it.

Importing this package does not import `evaluate`. Load the module with `evaluate.load(SEMANTIC_SCALE_PATH)` or
[`semscale_hf.load_metric`]; for large embedding sets call [`semantic_scale_metric`] on tensors directly.
"""

from pathlib import Path

from .functional import semantic_scale_metric


__all__ = ["SEMANTIC_SCALE_PATH", "semantic_scale_metric"]

SEMANTIC_SCALE_PATH: str = str(Path(__file__).resolve().parent / "semantic_scale")
"""Directory of the `semantic_scale` evaluate module (the argument for `evaluate.load`)."""
