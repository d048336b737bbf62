"""The math modules stay pure torch: no Trainer-side import may creep in."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import semscale_hf


PACKAGE = Path(semscale_hf.__file__).parent
MATH_MODULES = ["_validation", "scales", "stats", "weights", "imbalance", "marginal", "losses", "evaluation"]
FORBIDDEN = {"transformers", "accelerate", "datasets", "evaluate", "huggingface_hub"}


@pytest.mark.parametrize("module", MATH_MODULES)
def test_math_module_imports_only_torch(module):
    path = PACKAGE / f"{module}.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{module}.py imports {imported & FORBIDDEN}"


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
