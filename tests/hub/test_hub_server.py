"""End-to-end tests of the local Hub test double with the real huggingface_hub / transformers client code."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from _helpers import hub_fixtures
from _helpers.hub_fixtures import DUMMY_TOKEN, run_python
from _helpers.hub_server import HubServer
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


# Fixtures shared through a module attribute: unlike an import, an assignment shadowed by a test argument is not
# flagged by ruff (F811).
hub_server = hub_fixtures.hub_server
hub_server_in_process = hub_fixtures.hub_server_in_process

REPO = "test-user/tiny"


@pytest.fixture
def api(hub_server: HubServer) -> HfApi:
    return HfApi(endpoint=hub_server.url, token=DUMMY_TOKEN)


def _write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _raw_request(url: str, method: str, data: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_create_repo_namespace_and_exist_ok(hub_server, api):
    url = api.create_repo("tiny")
    assert url.repo_id == REPO
    assert hub_server.commit_messages(REPO) == ["initial commit"]

    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo("tiny")
    assert excinfo.value.response.status_code == 409
    assert api.create_repo("tiny", exist_ok=True).repo_id == REPO
    assert api.create_repo("my-org/other", private=True).repo_id == "my-org/other"
    assert hub_server.repo("my-org/other").private
    assert hub_server.repo_ids() == ["my-org/other", REPO]


def test_upload_folder_regular_and_lfs_round_trip(hub_server, api, tmp_path):
    hub_server.lfs_threshold = 1_000
    folder = tmp_path / "out"
    small = _write(folder / "config.json", b'{"a": 1}')
    large = _write(folder / "weights" / "model.bin", os.urandom(5_000))
    api.create_repo("tiny")

    info = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="Training in progress, epoch 1")

    assert hub_server.commit_messages(REPO) == ["initial commit", "Training in progress, epoch 1"]
    assert info.oid == hub_server.repo(REPO).head.oid
    assert not hub_server.file(REPO, "config.json").lfs
    assert hub_server.file(REPO, "weights/model.bin").lfs
    assert hub_server.read_file(REPO, "weights/model.bin") == large
    sha = hashlib.sha256(large).hexdigest()
    assert ("POST", "/test-user/tiny.git/info/lfs/objects/batch") in hub_server.requests
    assert ("PUT", f"/lfs-objects/{sha}") in hub_server.requests
    assert ("POST", f"/lfs-objects/{sha}/verify") in hub_server.requests

    assert api.list_repo_files(REPO) == [".gitattributes", "config.json", "weights/model.bin"]
    for path, expected in (("config.json", small), ("weights/model.bin", large)):
        local = hf_hub_download(REPO, path, endpoint=hub_server.url, cache_dir=tmp_path / "cache")
        assert Path(local).read_bytes() == expected
    assert [c.title for c in api.list_repo_commits(REPO)] == ["Training in progress, epoch 1", "initial commit"]

    # Same content again: the client sees the remote oids at preupload and makes no empty commit.
    api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="Training in progress, epoch 2")
    assert len(hub_server.commit_messages(REPO)) == 2


def test_lfs_bytes_are_checked_against_the_oid(hub_server, api):
    api.create_repo("tiny")
    data = b"weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    assert _raw_request(f"{hub_server.url}/lfs-objects/{oid}", "PUT", data[:-1]) == 400

    # A commit may not reference an LFS object that was never uploaded.
    lines = [
        {"key": "header", "value": {"summary": "bad", "description": ""}},
        {"key": "lfsFile", "value": {"path": "model.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    headers = {"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {DUMMY_TOKEN}"}
    assert _raw_request(f"{hub_server.url}/api/models/{REPO}/commit/main", "POST", body, headers) == 400

    assert _raw_request(f"{hub_server.url}/lfs-objects/{oid}", "PUT", data) == 200
    assert _raw_request(f"{hub_server.url}/api/models/{REPO}/commit/main", "POST", body, headers) == 200
    assert hub_server.read_file(REPO, "model.bin") == data
    assert hub_server.commit_messages(REPO) == ["initial commit", "bad"]


def test_model_card_goes_through_validate_yaml(hub_server, api):
    api.create_repo("tiny")
    card = b"---\nlicense: apache-2.0\ntags:\n- semscale\n---\n\n# tiny\n"
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=REPO, commit_message="Add model card")
    assert ("POST", "/api/validate-yaml") in hub_server.requests
    assert hub_server.read_file(REPO, "README.md") == card

    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(path_or_fileobj=b"---\nlicense: mit\n# no end\n", path_in_repo="README.md", repo_id=REPO)
    assert hub_server.commit_messages(REPO) == ["initial commit", "Add model card"]


def test_repo_info_siblings_and_pinned_revision(hub_server, api, tmp_path):
    hub_server.lfs_threshold = 100
    api.create_repo("tiny")
    big = os.urandom(300)
    api.upload_file(path_or_fileobj=big, path_in_repo="model.safetensors", repo_id=REPO)
    first = api.repo_info(REPO).sha
    api.upload_file(path_or_fileobj=b"v2" * 200, path_in_repo="model.safetensors", repo_id=REPO)

    info = api.repo_info(REPO, files_metadata=True)
    assert info.sha == hub_server.repo(REPO).head.oid != first
    siblings = {s.rfilename: s for s in info.siblings}
    assert sorted(siblings) == [".gitattributes", "model.safetensors"]
    assert siblings["model.safetensors"].size == 400
    assert siblings["model.safetensors"].lfs.sha256 == hashlib.sha256(b"v2" * 200).hexdigest()
    assert siblings[".gitattributes"].lfs is None

    # Old commits stay readable by sha, as `from_pretrained` pins the revision it resolved.
    local = hf_hub_download(REPO, "model.safetensors", revision=first, endpoint=hub_server.url, cache_dir=tmp_path)
    assert Path(local).read_bytes() == big


def test_missing_entries_raise_the_hub_errors(hub_server, api, tmp_path):
    api.create_repo("tiny")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.json", endpoint=hub_server.url, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("test-user/nope")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(REPO, revision="dev")
    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi(endpoint=hub_server.url, token=False).create_repo("unauthenticated")
    assert excinfo.value.response.status_code == 401


def test_delete_file_and_tree_listing(hub_server, api):
    api.create_repo("tiny")
    api.upload_file(path_or_fileobj=b"a", path_in_repo="ckpt/a.txt", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"b", path_in_repo="top.txt", repo_id=REPO)
    top_level = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(REPO)}
    assert top_level == {".gitattributes": "RepoFile", "ckpt": "RepoFolder", "top.txt": "RepoFile"}
    assert [entry.path for entry in api.list_repo_tree(REPO, path_in_repo="ckpt")] == ["ckpt/a.txt"]

    api.delete_folder("ckpt", repo_id=REPO, commit_message="drop checkpoint")
    assert hub_server.list_files(REPO) == [".gitattributes", "top.txt"]
    assert hub_server.commit_messages(REPO)[-1] == "drop checkpoint"


def test_dataset_repo(hub_server, api, tmp_path):
    hub_server.lfs_threshold = 10
    url = api.create_repo("data", repo_type="dataset")
    assert url.repo_type == "dataset"
    data = b"label,value\n" * 10
    api.upload_file(path_or_fileobj=data, path_in_repo="train.csv", repo_id="test-user/data", repo_type="dataset")
    assert hub_server.file("test-user/data", "train.csv", repo_type="dataset").lfs
    local = hf_hub_download(
        "test-user/data", "train.csv", repo_type="dataset", endpoint=hub_server.url, cache_dir=tmp_path
    )
    assert Path(local).read_bytes() == data
    with pytest.raises(KeyError):
        hub_server.repo("test-user/data")  # a model repo of that name does not exist


def test_fail_mode_fails_fast(hub_server, api, tmp_path):
    api.create_repo("tiny")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    hub_server.fail_mode = True
    # create_repo and repo_info are not retried by the client, so the default 503 surfaces at once.
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo("tiny", exist_ok=True)
    assert excinfo.value.response.status_code == 503
    with pytest.raises(HfHubHTTPError):
        api.repo_info(REPO)

    # Uploads and downloads retry 5xx for ~23 s; 507 is not in the client's retry list.
    hub_server.fail_status = 507
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=REPO)
    assert excinfo.value.response.status_code == 507
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "x.txt", endpoint=hub_server.url, cache_dir=tmp_path)

    hub_server.fail_mode = False
    assert api.list_repo_files(REPO) == [".gitattributes", "x.txt"]
    assert hub_server.commit_messages(REPO) == ["initial commit", "Upload x.txt with huggingface_hub"]


def test_stop_refuses_connections_and_start_resumes(hub_server, api):
    api.create_repo("tiny")
    url = hub_server.url
    hub_server.stop()
    with pytest.raises(httpx2.ConnectError):
        api.repo_info(REPO)
    hub_server.start()
    assert hub_server.url == url
    assert api.repo_info(REPO).sha == hub_server.repo(REPO).head.oid


def test_xet_uploads_are_refused(hub_server, api, monkeypatch):
    pytest.importorskip("hf_xet")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    hub_server.lfs_threshold = 10
    api.create_repo("tiny")
    with pytest.raises(OSError, match="xet-write-token"):
        api.upload_file(path_or_fileobj=b"z" * 100, path_in_repo="z.bin", repo_id=REPO)
    assert hub_server.commit_messages(REPO) == ["initial commit"]


def test_in_process_fixture_patches_module_level_functions(hub_server_in_process, tmp_path):
    import huggingface_hub

    huggingface_hub.create_repo("tiny")
    huggingface_hub.upload_file(path_or_fileobj=b"abc", path_in_repo="a.txt", repo_id=REPO)
    assert Path(huggingface_hub.hf_hub_download(REPO, "a.txt")).read_bytes() == b"abc"
    assert Path(huggingface_hub.hf_hub_download(REPO, "a.txt")).is_relative_to(tmp_path)


_PUSH_AND_LOAD = """
import torch
from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification

torch.manual_seed(0)
config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, num_labels=3)
model = ViTForImageClassification(config)
model.push_to_hub("test-user/tiny")
model.save_pretrained("local")  # what push_to_hub should have uploaded

loaded = AutoModelForImageClassification.from_pretrained("test-user/tiny")
expected, actual = model.state_dict(), loaded.state_dict()
assert expected.keys() == actual.keys(), sorted(set(expected) ^ set(actual))
for name in expected:
    assert torch.equal(expected[name], actual[name]), name
print("WEIGHTS_EQUAL", type(loaded).__name__)
"""


def test_transformers_push_to_hub_and_from_pretrained_in_subprocess(hub_server, tmp_path):
    from safetensors.torch import load, load_file

    hub_server.lfs_threshold = 1_000  # like the real Hub, weights go through LFS
    stdout = run_python(_PUSH_AND_LOAD, cwd=tmp_path, timeout=180)

    assert "WEIGHTS_EQUAL ViTForImageClassification" in stdout
    assert hub_server.list_files(REPO) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert hub_server.file(REPO, "model.safetensors").lfs
    assert hub_server.commit_messages(REPO) == ["initial commit", "Upload ViTForImageClassification"]
    assert ("POST", "/api/validate-yaml") in hub_server.requests  # the model card
    saved = load_file(tmp_path / "local" / "model.safetensors")
    on_hub = load(hub_server.read_file(REPO, "model.safetensors"))
    assert saved.keys() == on_hub.keys()
    assert all(bool((saved[name] == on_hub[name]).all()) for name in saved)


@pytest.mark.slow  # imports transformers and torch in the pytest process (~5 s); run with `pytest -m slow`
def test_in_process_fixture_with_transformers(hub_server_in_process):
    import torch
    import transformers.utils.hub
    from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification

    hub_server_in_process.lfs_threshold = 1_000
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    model = ViTForImageClassification(config)
    model.push_to_hub("tiny")  # bare name: the server puts it under its user
    loaded = AutoModelForImageClassification.from_pretrained(REPO)

    assert transformers.utils.hub.hf_api().endpoint == hub_server_in_process.url
    assert hub_server_in_process.file(REPO, "model.safetensors").lfs
    expected, actual = model.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
