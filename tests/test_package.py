"""The public API: all of `__all__` imports from `semscale_hf`, lazily, and the math API needs no HF library."""

import subprocess
import sys
from pathlib import Path

import pytest

import semscale_hf


FORBIDDEN = {"transformers", "accelerate", "datasets", "evaluate", "huggingface_hub"}


def test_public_api_is_sorted_and_importable():
    assert semscale_hf.__all__ == sorted(semscale_hf.__all__)
    for name in semscale_hf.__all__:
        assert hasattr(semscale_hf, name), name


def test_exports_are_lazy_and_complete():
    assert set(semscale_hf.__all__) == set(semscale_hf._SUBMODULE_OF) | {"__version__"}
    assert set(semscale_hf.__all__) <= set(dir(semscale_hf))
    # a fresh interpreter: the package and its math API load without the Trainer-side libraries
    code = (
        "import sys, semscale_hf\n"
        "from semscale_hf import class_semantic_scales, scale_imbalance, scales_to_weights, ClassMoments\n"
        f"print(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules))\n"
        "semscale_hf.SemScaleTrainer\n"
        "print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        semscale_hf.not_a_name  # noqa: B018


def test_readme_lists_every_logged_metric():
    from semscale_hf.core.metric_keys import LOGGED_METRICS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Logged metrics", 1)[1].split("\n## ", 1)[0]
    for key, when, meaning in LOGGED_METRICS:
        assert f"| `{key}` | {when} | {meaning} |" in section, key
