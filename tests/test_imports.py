"""The math modules stay pure torch: no Trainer-side import may creep in."""

import ast
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
