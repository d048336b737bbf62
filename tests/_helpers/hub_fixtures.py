"""pytest fixtures around `tests/hub_server.py`, the local Hugging Face Hub test double.

Use them from a test module by binding them to module attributes (pytest picks up fixtures from the module namespace;
`tests/` is on `sys.path` under pytest's default "prepend" import mode; an assignment, unlike an import, is not flagged
by ruff F811 when a test argument shadows it):

```python
from _helpers import hub_fixtures
from _helpers.hub_fixtures import run_python


hub_server = hub_fixtures.hub_server


def test_push(hub_server, tmp_path):
    hub_server.lfs_threshold = 1_000  # send model.safetensors through LFS, as the real Hub does
    run_python("...Trainer(args=TrainingArguments(push_to_hub=True, hub_model_id='tiny')...).train()", cwd=tmp_path)
    assert "Training in progress, epoch 1" in hub_server.commit_messages("test-user/tiny")
```

- `hub_server`: a started `HubServer` and the environment a **subprocess** needs (`HF_ENDPOINT`, `HF_TOKEN`,
  `HF_HUB_DISABLE_XET`, a private `HF_HOME`, ...), set with `monkeypatch.setenv` so `subprocess.run` inherits it. In
  this process it only sets `huggingface_hub.constants.HF_HUB_DISABLE_XET = True`: pass `endpoint=hub_server.url`
  to `HfApi` / `hf_hub_download` explicitly.
- `hub_server_in_process`: the same server, plus patches of the import-time state of huggingface_hub 2.4 and
  transformers 5.24 so unmodified in-process code (module-level `huggingface_hub` functions, `push_to_hub`,
  `from_pretrained`, `Trainer`) talks to it. Verified for `push_to_hub` + `from_pretrained`; a subprocess stays the
  most robust choice because any other module that copied `ENDPOINT` at import escapes the patch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from _helpers.hub_server import HubServer


__all__ = ["hub_env", "hub_server", "hub_server_in_process", "run_python"]

DUMMY_TOKEN = "dummy-token"


def hub_env(server: HubServer, hf_home: str | os.PathLike) -> dict[str, str]:
    """Environment variables that point a *fresh* Python process at `server`.

    Args:
        server (`HubServer`):
            A started server.
        hf_home (`str` or `os.PathLike`):
            Private `HF_HOME` (token file, Hub cache, agent-harness cache), so the test touches no user cache.

    Returns:
        `dict[str, str]`: variables to merge into `os.environ` or into a subprocess `env`.
    """
    return {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": DUMMY_TOKEN,
        # hf_xet is installed: without this, "lfs" uploads go to a Xet CAS server the test Hub cannot emulate.
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(Path(hf_home) / "hub"),
    }


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running `HubServer`, with the environment set for subprocesses (see `hub_env`)."""
    import huggingface_hub.constants

    server = HubServer().start()
    for name, value in hub_env(server, tmp_path / "hf_home").items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_CO_STAGING", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # Read at call time by `is_xet_available()`, so this also covers `HfApi(endpoint=...)` in this process.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_server_in_process(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """`hub_server`, plus patches so in-process code that does not take an `endpoint` argument reaches it."""
    import huggingface_hub.hf_api
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub_server.url)
    # `hf_hub_url` (used by `hf_hub_download` and transformers) formats this template, built at import time.
    template = hub_server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", os.environ["HF_HUB_CACHE"])
    # `huggingface_hub.create_repo` & co. are methods of an `HfApi()` built at import.
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub_server.url)
    # transformers caches one `HfApi` in `transformers.utils.hub.hf_api()`: drop it so the next call builds one on the
    # patched ENDPOINT, and drop it again afterwards if the test imported transformers (importing it here costs ~2 s).
    transformers_was_loaded = "transformers.utils.hub" in sys.modules
    if transformers_was_loaded:
        monkeypatch.setattr(sys.modules["transformers.utils.hub"], "_hf_api", None)
    yield hub_server
    if not transformers_was_loaded and "transformers.utils.hub" in sys.modules:
        sys.modules["transformers.utils.hub"]._hf_api = None


def run_python(code: str, *, cwd: str | os.PathLike | None = None, timeout: float = 300) -> str:
    """Runs `code` with this interpreter in a subprocess that inherits `os.environ` (so the `hub_server` settings).

    Args:
        code (`str`):
            Python source, passed with `-c`.
        cwd (`str` or `os.PathLike`, *optional*):
            Working directory of the subprocess (e.g. `tmp_path`, for a Trainer `output_dir`).
        timeout (`float`, *optional*, defaults to `300`):
            Seconds before the subprocess is killed, so a hung upload cannot hang the test run.

    Returns:
        `str`: the subprocess's stdout.

    Raises:
        `AssertionError`: if the subprocess exits with a non-zero status; the message holds its stdout and stderr.
    """
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"subprocess exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result.stdout
