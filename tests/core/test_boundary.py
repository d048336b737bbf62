"""The core stays torch-only: no module under `semscale_hf/core/` imports a Hugging Face library, or a package layer
above the core. The folder is walked, so a new core module is covered without editing this test."""

import ast
from pathlib import Path

import pytest

import semscale_hf


CORE = Path(semscale_hf.__file__).parent / "core"
MODULES = sorted(CORE.rglob("*.py"))
FORBIDDEN = {"transformers", "accelerate", "datasets", "evaluate", "huggingface_hub"}
LAYERS_ABOVE = {"training", "analysis", "hub", "commands", "metrics", "data", "cli"}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level packages imported absolutely, and package-internal modules imported relatively or by full name."""
    external, internal = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                (internal.add(parts[1]) if parts[0] == "semscale_hf" and len(parts) > 1 else external.add(parts[0]))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = node.module.split(".")
                (internal.add(parts[1]) if parts[0] == "semscale_hf" and len(parts) > 1 else external.add(parts[0]))
            elif node.level >= 2 and node.module:  # `from ..x import`: a sibling layer of core
                internal.add(node.module.split(".")[0])
    return external, internal


def test_the_walk_finds_the_core_modules():
    names = {path.stem for path in MODULES}
    assert {"scales", "_linalg", "moments", "weights", "losses", "pool", "capture", "balancer"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(CORE)))
def test_core_module_imports_only_torch_side_libraries(path):
    external, internal = _imports(path)
    assert not external & FORBIDDEN, f"{path.name} imports {external & FORBIDDEN}"
    assert not internal & LAYERS_ABOVE, f"{path.name} imports the layer(s) {internal & LAYERS_ABOVE} above the core"


ANALYSIS = Path(semscale_hf.__file__).parent / "analysis"


@pytest.mark.parametrize(
    "path", sorted(ANALYSIS.rglob("*.py")), ids=lambda path: str(path.relative_to(ANALYSIS.parent))
)
def test_offline_analysis_imports_no_hugging_face_library(path):
    # the analysis works on tensors too (features extracted by any model), so it stays free of HF libraries
    external, _ = _imports(path)
    assert not external & FORBIDDEN, f"{path.name} imports {external & FORBIDDEN}"
