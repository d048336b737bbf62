"""The package's layers, read from the code: no import cycle, no import from a lower layer up to a higher one, and
at most 7 import levels from the commands down to the lowest module. The import graph is parsed, not run, so every
module (and every import inside a function) is seen."""

import ast
from functools import cache
from pathlib import Path

import semscale_hf


PACKAGE = Path(semscale_hf.__file__).parent
# Each layer may import only itself and the layers below it (a lower number); data sits beside the core and the
# evaluate module beside the Hub cards.
LAYERS = {"core": 0, "data": 0, "analysis": 1, "metrics": 2, "hub": 2, "training": 3, "commands": 4, "cli": 5}
MAX_LEVELS = 7


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    targets = []
    for alias in node.names:  # `from . import x` imports the submodule x when there is one
        candidate = f"{base}.{alias.name}"
        targets.append(candidate if candidate in MODULES else base)
    return targets


@cache
def imports_of(module: str) -> frozenset[str]:
    """Package modules that `module` imports (the module a name comes from; its package's `__init__` not counted)."""
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, path.name == "__init__.py", node))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return frozenset(name for name in found if name in MODULES and name != module)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _faces() -> set[str]:
    """The package `__init__` modules: they hand names on (lazily at the top) and are not a layer of their own."""
    return {name for name, path in MODULES.items() if path.name == "__init__.py"}


def test_no_module_imports_a_higher_layer():
    wrong = []
    for module in set(MODULES) - _faces():
        layer = _layer(module)
        for target in imports_of(module) - _faces():
            if layer in LAYERS and _layer(target) in LAYERS and LAYERS[_layer(target)] > LAYERS[layer]:
                wrong.append(f"{module} -> {target}")
            elif layer in LAYERS and _layer(target) != layer and LAYERS.get(_layer(target)) == LAYERS[layer]:
                wrong.append(f"{module} -> {target} (a layer beside it)")
    assert not wrong


def test_no_import_cycle_and_at_most_seven_levels():
    faces = _faces()
    depth: dict[str, int] = {}
    visiting: list[str] = []

    def level(module: str) -> int:
        if module in depth:
            return depth[module]
        assert module not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        below = [level(target) for target in imports_of(module) - faces]
        visiting.pop()
        depth[module] = 1 + max(below, default=0)
        return depth[module]

    for module in sorted(set(MODULES) - faces):
        level(module)
    commands = {name: levels for name, levels in depth.items() if _layer(name) == "commands"}
    assert max(commands.values()) <= MAX_LEVELS, commands
