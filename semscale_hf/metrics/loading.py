"""Loading the `semantic_scale` evaluate module offline: by path, through [`load_metric`], or by bare name.

`evaluate.load("semantic_scale")` resolves a bare name to the Hub (`evaluate-metric/semantic_scale`) and, when that
fails, to the newest copy in evaluate's modules cache. There is no plugin registry, so a bare-name load needs a cache
entry; [`register_evaluate_module`] (or `semscale install-metric`) writes one, once, on request. Importing semscale_hf
never writes into the cache.

| how | needs |
|---|---|
| `semscale_hf.load_metric()` | nothing |
| `evaluate.load(semscale_hf.metrics.SEMANTIC_SCALE_PATH)` | nothing |
| `evaluate.load("semantic_scale")` | `semscale install-metric` once per `HF_HOME` (`HF_EVALUATE_OFFLINE=1`: no Hub) |

`evaluate` is imported lazily (it takes seconds to import), inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import SEMANTIC_SCALE_PATH


if TYPE_CHECKING:
    import evaluate


__all__ = ["METRIC_NAME", "load_metric", "register_evaluate_module"]

METRIC_NAME = "semantic_scale"
# evaluate's cache folder for a canonical ("evaluate-metric/<name>") module, where a bare-name load looks
_CACHE_FOLDER = f"evaluate-metric--{METRIC_NAME}"
# The cache entry only re-imports the installed class, so it stays valid when semscale-hf is upgraded.
_SHIM = f'''"""The {METRIC_NAME} evaluate module, registered by `semscale install-metric`; code in semscale-hf."""

from semscale_hf.metrics.{METRIC_NAME}.{METRIC_NAME} import SemanticScale  # noqa: F401
'''


def load_metric(**load_kwargs: Any) -> evaluate.EvaluationModule:
    """Loads the `semantic_scale` evaluate module shipped inside the installed package, without network access.

    Equivalent to `evaluate.load(semscale_hf.metrics.SEMANTIC_SCALE_PATH, **load_kwargs)`. Like any local
    `evaluate.load`, it copies the module script into evaluate's modules cache (`$HF_HOME/modules`).

    Args:
        load_kwargs:
            Passed to `evaluate.load`, e.g. `cache_dir`, `keep_in_memory`, `num_process`, `process_id`,
            `experiment_id`.

    Returns:
        `evaluate.EvaluationModule`: the metric; see its card (`semscale_hf/metrics/semantic_scale/README.md`).

    Example:

    ```python
    >>> from semscale_hf import load_metric
    >>> metric = load_metric(keep_in_memory=True)
    >>> metric.compute(embeddings=embeddings, labels=labels)["scale_imbalance_ratio"]  # doctest: +SKIP
    ```
    """
    import evaluate

    return evaluate.load(SEMANTIC_SCALE_PATH, **load_kwargs)


def register_evaluate_module(modules_cache: str | os.PathLike[str] | None = None) -> Path:
    """Makes `evaluate.load("semantic_scale")` work offline by writing a cache entry that points to this package.

    This is an explicit, one-time step per cache (the CLI equivalent is `semscale install-metric`). The entry is a
    two-line module that imports the metric class from the installed semscale-hf, so it stays valid across upgrades.
    Loading by name then logs evaluate's warning "Using the latest cached version of the module"; set
    `HF_EVALUATE_OFFLINE=1` to skip the Hub lookup that comes first. To undo, delete the returned file's parent's
    parent directory.

    Args:
        modules_cache (`str` or `os.PathLike`, *optional*):
            evaluate's modules cache; defaults to `evaluate.config.HF_MODULES_CACHE` (`$HF_MODULES_CACHE`, else
            `$HF_HOME/modules`), which is where a bare-name load looks.

    Returns:
        `Path`: the written module file, `<modules_cache>/evaluate_modules/metrics/evaluate-metric--semantic_scale/
        <sha256>/semantic_scale.py`.
    """
    from evaluate.loading import init_dynamic_modules

    # creates <cache>/__init__.py and <cache>/evaluate_modules/__init__.py, as evaluate itself does
    dynamic_modules = Path(
        init_dynamic_modules(hf_modules_cache=None if modules_cache is None else str(modules_cache))
    )
    digest = hashlib.sha256(_SHIM.encode("utf-8")).hexdigest()  # a 64-hex folder name is what evaluate scans for
    folder = dynamic_modules / "metrics" / _CACHE_FOLDER / digest
    folder.mkdir(parents=True, exist_ok=True)
    for package in (dynamic_modules / "metrics", folder.parent, folder):
        (package / "__init__.py").touch()
    script = folder / f"{METRIC_NAME}.py"
    if not script.exists() or script.read_text(encoding="utf-8") != _SHIM:
        script.write_text(_SHIM, encoding="utf-8")
    # evaluate picks the newest entry by modification time: make ours the newest
    os.utime(script)
    return script
