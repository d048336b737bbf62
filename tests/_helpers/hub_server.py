"""A local, in-memory Hugging Face Hub test double for end-to-end Hub tests without network.

`HubServer` is a stdlib `ThreadingHTTPServer` on `127.0.0.1` (free port) that speaks enough of the Hub HTTP API for the
*real* `huggingface_hub` 2.4 client code path: `create_repo`, `upload_folder` / `create_commit` (regular files inline
in the ndjson commit, large files through the classic Git LFS batch + PUT + verify protocol), `repo_info`,
`list_repo_files` / `list_repo_tree`, `list_repo_commits`, `hf_hub_download` / `snapshot_download`, and therefore
`Trainer(push_to_hub=True)`, `model.push_to_hub(...)` and `AutoModel.from_pretrained("user/name")`.

Routes (`{t}` is `models` or `datasets`, `{repo}` is `namespace/name`, `[d/]` is the `datasets/` prefix of dataset
repos outside `/api`):

| route | behaviour |
|---|---|
| `POST /api/repos/create` | `{organization or user}/{name}`, "initial commit" of `.gitattributes`; 409 + `url` |
| `DELETE /api/repos/delete` | deletes a repo |
| `POST /api/validate-yaml` | 400 only if the `---` front matter is never closed (no YAML parser in the stdlib) |
| `GET /api/whoami-v2` | `{"name": user}` |
| `GET /api/{t}/{repo}[/revision/{rev}]` | `sha`, `siblings` (+ `size`, `blobId`, `lfs` with `?blobs=true`) |
| `POST /api/{t}/{repo}/preupload/main` | "lfs" if `size >= lfs_threshold` else "regular"; `oid` of the current file |
| `GET /api/{t}/{repo}/xet-{read,write}-token/{rev}` | 501: Xet storage is not implemented (see below) |
| `POST /[d/]{repo}.git/info/lfs/objects/batch` | "basic" transfer; objects already stored get no `actions` |
| `PUT /lfs-objects/{oid}`, `POST .../verify` | stores the bytes if their sha256 is `oid` (else 400); checks size |
| `POST /api/{t}/{repo}/commit/main` | ndjson `header`, `file`, `lfsFile`, `deletedFile`, `deletedFolder`; 412 |
| `GET /api/{t}/{repo}/tree/{rev}[/{path}]` | `recursive`; one page, `expand` ignored |
| `GET /api/{t}/{repo}/commits/{rev}` | newest first, one page |
| `HEAD`/`GET /[d/]{repo}/resolve/{rev}/{path}` | bytes, `Range`, `ETag`, `X-Repo-Commit`, `X-Linked-Etag/Size` |
| anything else (e.g. `GET /api/agent-harnesses`) | 404 |

Revisions: writes go to `main` only (no branches, no pull requests); reads accept `main` or any commit sha the server
made (`from_pretrained` resolves `main` to a sha first, then downloads by sha). Errors carry the `X-Error-Code` header
(`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) that `hf_raise_for_status` turns into `RepositoryNotFoundError`,
`RevisionNotFoundError` and `RemoteEntryNotFoundError`. Write routes need an `Authorization: Bearer <anything>` header
(401 otherwise), so a subprocess that lost `HF_TOKEN` fails loudly. Unlike the real Hub, "lfs" depends on size only,
not on `.gitattributes` patterns: lower `lfs_threshold` (e.g. to 1_000) to send model weights through LFS.

Pointing the client at the server (read in the huggingface_hub 2.4 and transformers 5.24 sources, exercised by
`tests/test_hub_server.py`):

- `huggingface_hub.constants.ENDPOINT`, `HUGGINGFACE_CO_URL_TEMPLATE`, `HF_HUB_DISABLE_XET` and `HF_HUB_CACHE` are read
  from the environment **at import time**; the module-level functions (`huggingface_hub.create_repo`, ...) are methods
  of an `HfApi()` built at import; transformers keeps one `HfApi` in `transformers.utils.hub.hf_api()` and calls
  `hf_hub_download` without `endpoint=`. So `monkeypatch.setenv("HF_ENDPOINT", ...)` does not reach code that is
  already imported.
- **Safest: run the code under test in a subprocess** whose environment has `HF_ENDPOINT=<server.url>`,
  `HF_TOKEN=<any>`, `HF_HUB_DISABLE_XET=1` and a private `HF_HOME`. The `hub_server` fixture of
  `tests/hub_fixtures.py` sets them with `monkeypatch.setenv`, so `subprocess.run(...)` inherits them.
- In-process, pass the endpoint explicitly (`HfApi(endpoint=server.url)`, `hf_hub_download(..., endpoint=server.url,
  cache_dir=tmp_path)`) and set `huggingface_hub.constants.HF_HUB_DISABLE_XET = True` (read at call time by
  `is_xet_available()`; the `hub_server` fixture does it). The `hub_server_in_process` fixture also patches the
  import-time state listed above, which is enough for `push_to_hub` and `from_pretrained` in-process.

Xet: `hf_xet` is installed, and while `is_xet_available()` is true `upload_folder` takes a multi-commit pipeline and
uploads "lfs" files from Rust to a Xet CAS server, which cannot be mocked in Python. With `HF_HUB_DISABLE_XET=1` the
client uses the classic LFS protocol served here. The server never advertises Xet (no `X-Xet-*` headers, so downloads
always take the plain HTTP path) and answers the Xet token routes with 501: an "lfs" upload that forgot
`HF_HUB_DISABLE_XET=1` fails at once with a `ConnectionError` naming `xet-write-token`, and makes no commit.

Failure simulation: set `fail_mode = True` to answer every request with `fail_status` (default 503), or call `stop()`
to refuse connections (a later `start()` serves the same data on the same port); clear `commit_gate` to hold every
commit until it is set again (a slow Hub, uploads kept in progress). Mind the client's retries:
`http_backoff` retries 408/429/500/502/503/504 and connection errors 5 times with 1, 2, 4, 8 and 8 s sleeps (about
23 s) on preupload, the LFS batch/PUT/verify calls, tree and commit listings, and on the second `hf_hub_download` HEAD
made when nothing is cached. `create_repo`, `repo_info`, `validate-yaml` and the commit POST are not retried (a
stopped server gives `httpx2.ConnectError` at once). For a fast failure on the upload or download path use a status
outside that list, e.g. `fail_status = 507`.

Example:

```python
>>> from huggingface_hub import HfApi
>>> with HubServer() as server:
...     api = HfApi(endpoint=server.url, token="dummy-token")
...     url = api.create_repo("tiny")
...     server.commit_messages("test-user/tiny")
['initial commit']

```
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


__all__ = ["HubCommit", "HubFile", "HubRepo", "HubServer"]

_REPO_TYPES = {"models": "model", "datasets": "dataset"}
_URL_PREFIXES = {"model": "", "dataset": "datasets/"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def _git_blob_sha1(data: bytes) -> str:
    # As `git hash-object` and `huggingface_hub.utils.sha.git_hash`: the client compares it with preupload's `oid`.
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def _format_date(date: datetime) -> str:
    # `huggingface_hub.utils.parse_datetime` expects the Hub's '%Y-%m-%dT%H:%M:%S.%fZ' format.
    return date.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class HubFile:
    """One file of a repo snapshot.

    Args:
        data (`bytes`):
            The file content.
        lfs (`bool`):
            Whether the file was committed as an LFS pointer (`lfsFile`) rather than inline (`file`).
    """

    data: bytes
    lfs: bool
    sha256: str = field(init=False)
    git_oid: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())
        object.__setattr__(self, "git_oid", _git_blob_sha1(self.data))

    @property
    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()
        )

    @property
    def oid(self) -> str:
        """sha256 for LFS files, else git sha1: preupload's `oid` (as `CommitOperationAdd._local_oid`) and ETag."""
        return self.sha256 if self.lfs else self.git_oid

    def tree_entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(self.data), "oid": self.git_oid}
        if self.lfs:
            pointer = self.pointer
            entry["oid"] = _git_blob_sha1(pointer)
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(pointer)}
        return entry


@dataclass(frozen=True)
class HubCommit:
    """A commit: its message and the full snapshot of the repo after it.

    Args:
        oid (`str`):
            40-character hex id, usable as a revision.
        summary (`str`):
            The commit title (`commit_message` on the client side).
        description (`str`):
            The commit description.
        date (`datetime`):
            When the server recorded the commit (UTC).
        files (`dict[str, HubFile]`):
            Every file of the repo at this commit, by path.
    """

    oid: str
    summary: str
    description: str
    date: datetime
    files: dict[str, HubFile]


@dataclass
class HubRepo:
    """A repo held by the server.

    Args:
        repo_id (`str`):
            `"namespace/name"`.
        repo_type (`str`):
            `"model"` or `"dataset"`.
        private (`bool`):
            Whether it was created with `private=True` (not enforced on reads).
        created_at (`datetime`):
            Creation time (UTC).
        commits (`list[HubCommit]`):
            Oldest first; `commits[-1]` is the head of `main`.
    """

    repo_id: str
    repo_type: str
    private: bool
    created_at: datetime
    commits: list[HubCommit] = field(default_factory=list)

    @property
    def head(self) -> HubCommit:
        return self.commits[-1]

    def at(self, revision: str | None) -> HubCommit | None:
        """The commit `revision` ("main", `None` or a commit sha) points to, or `None` if unknown."""
        if revision in (None, "main"):
            return self.head
        if _COMMIT_SHA_RE.match(revision):
            for commit in self.commits:
                if commit.oid == revision:
                    return commit
        return None


class _HTTPError(Exception):
    """Raised inside a route to answer an error; turned into a JSON response with the Hub's error headers."""

    def __init__(self, status: int, message: str, error_code: str | None = None, body: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.body = body


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so after `stop()` no keep-alive connection can still be served.
    protocol_version = "HTTP/1.0"
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.hub._handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.hub._handle(self, "HEAD")

    def do_POST(self) -> None:
        self.server.hub._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.hub._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.hub._handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; `HubServer.requests` records the traffic

    def read_body(self) -> bytes:
        # The LFS PUT streams a file object, which httpx2 may send with chunked transfer encoding.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, content_type: str | None = None
    ) -> None:
        self.send_response(status)
        if body or content_type is not None:
            self.send_header("Content-Type", content_type or "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(payload).encode(), headers)


class HubServer:
    """In-memory Hugging Face Hub test double served over HTTP on `127.0.0.1`.

    Args:
        user (`str`, *optional*, defaults to `"test-user"`):
            Namespace of repos created without one (`create_repo("tiny")` gives `"test-user/tiny"`) and `whoami` name.
        lfs_threshold (`int`, *optional*, defaults to `1_000_000`):
            Files of at least this many bytes get `uploadMode="lfs"` at preupload; smaller ones are sent inline in the
            commit. `0` sends every non-empty file through LFS (the client always sends empty files inline).
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Interface to bind; the port is chosen by the OS.

    Attributes:
        fail_mode (`bool`):
            When `True`, every request is answered with `fail_status` and a JSON error body.
        fail_status (`int`):
            Status used by `fail_mode` (default 503, which `huggingface_hub` retries on some routes: see the module
            docstring).
        requests (`list[tuple[str, str]]`):
            `(method, path)` of every request received, path without the query string, in arrival order.
        commit_gate (`threading.Event`):
            Set by default; while it is cleared, every commit request waits for it (at most 120 s) before it is
            handled: a slow Hub whose uploads stay in progress for as long as a test needs.
    """

    def __init__(self, *, user: str = "test-user", lfs_threshold: int = 1_000_000, host: str = "127.0.0.1") -> None:
        if lfs_threshold < 0:
            raise ValueError(f"`lfs_threshold` must be >= 0 bytes, got {lfs_threshold}.")
        self.user = user
        self.lfs_threshold = lfs_threshold
        self.host = host
        self.fail_mode = False
        self.fail_status = 503
        self.requests: list[tuple[str, str]] = []
        self.commit_gate = threading.Event()
        self.commit_gate.set()
        self._repos: dict[tuple[str, str], HubRepo] = {}
        self._lfs_objects: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # ----------------------------------------------------------------------------------------------------------------
    # Lifecycle

    def start(self) -> HubServer:
        """Starts serving in a background thread; after a `stop()` it serves the same data on the same port."""
        if self._httpd is not None:
            raise RuntimeError("HubServer is already running; call stop() first.")
        httpd = _HTTPServer((self.host, self._port), _Handler)
        httpd.hub = self
        self._port = httpd.server_address[1]
        self._httpd = httpd
        # A short poll interval keeps stop() (which waits for the serving loop to notice) fast.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket, so new connections are refused (the Hub "goes away")."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None
        self._thread = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        """Base URL to use as `HF_ENDPOINT` / `HfApi(endpoint=...)`, e.g. `"http://127.0.0.1:43517"`."""
        if self._port == 0:
            raise RuntimeError("HubServer has no port yet; call start() first.")
        return f"http://{self.host}:{self._port}"

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------------------------------
    # Inspection helpers for tests (no HTTP involved)

    def repo(self, repo_id: str, repo_type: str = "model") -> HubRepo:
        """The stored repo; raises `KeyError` listing the known repos if it does not exist."""
        with self._lock:
            try:
                return self._repos[(repo_type, repo_id)]
            except KeyError:
                known = sorted(f"{t}:{r}" for t, r in self._repos)
                raise KeyError(f"No {repo_type} repo {repo_id!r} on the test Hub; known repos: {known}") from None

    def repo_ids(self, repo_type: str = "model") -> list[str]:
        with self._lock:
            return sorted(repo_id for t, repo_id in self._repos if t == repo_type)

    def commit_messages(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Commit summaries, oldest first (the first one is the server's "initial commit")."""
        with self._lock:
            return [commit.summary for commit in self.repo(repo_id, repo_type).commits]

    def list_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Sorted paths of the files at `revision`."""
        with self._lock:
            return sorted(self._commit(repo_id, repo_type, revision).files)

    def read_file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        return self.file(repo_id, path, repo_type, revision).data

    def file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> HubFile:
        """The stored `HubFile` (`.data`, `.lfs`, `.sha256`); raises `KeyError` if absent."""
        with self._lock:
            files = self._commit(repo_id, repo_type, revision).files
            if path not in files:
                raise KeyError(
                    f"No file {path!r} in {repo_type} repo {repo_id!r} at {revision!r}; files: {sorted(files)}"
                )
            return files[path]

    def _commit(self, repo_id: str, repo_type: str, revision: str) -> HubCommit:
        commit = self.repo(repo_id, repo_type).at(revision)
        if commit is None:
            raise KeyError(f"Unknown revision {revision!r} of {repo_type} repo {repo_id!r}")
        return commit

    # ----------------------------------------------------------------------------------------------------------------
    # HTTP dispatch

    def _handle(self, request: _Handler, method: str) -> None:
        split = urlsplit(request.path)
        # Split before unquoting: a revision or tree path quoted with safe="" keeps its "/" inside one segment.
        segments = [unquote(part) for part in split.path.split("/") if part]
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        body = request.read_body() if method in ("POST", "PUT", "DELETE") else b""
        with self._lock:
            self.requests.append((method, unquote(split.path)))
        try:
            if self.fail_mode:
                raise _HTTPError(self.fail_status, f"Test Hub is in fail mode (HTTP {self.fail_status}).")
            self._route(request, method, segments, query, body)
        except _HTTPError as err:
            headers = {"X-Error-Message": err.message}
            if err.error_code is not None:
                headers["X-Error-Code"] = err.error_code
            request.send_json(err.status, err.body or {"error": err.message}, headers)
        except Exception as err:
            # A bug in the test double or a payload it does not understand: answer with the cause rather than drop the
            # connection, and with 501 rather than 500, which the client would retry for ~23 s.
            request.send_json(501, {"error": f"Test Hub internal error: {err!r}"}, {"X-Error-Message": repr(err)})

    def _route(self, request: _Handler, method: str, seg: list[str], query: dict[str, str], body: bytes) -> None:
        if seg[:2] == ["api", "repos"] and len(seg) == 3:
            if seg[2] == "create" and method == "POST":
                return self._create_repo(request, self._json(body))
            if seg[2] == "delete" and method == "DELETE":
                return self._delete_repo(request, self._json(body))
        if seg == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(request, self._json(body))
        if seg == ["api", "whoami-v2"] and method == "GET":
            return request.send_json(200, {"type": "user", "name": self.user, "fullname": self.user, "orgs": []})
        if len(seg) >= 4 and seg[0] == "api" and seg[1] in _REPO_TYPES:
            return self._api_repo(request, method, _REPO_TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:], query, body)
        if seg[:1] == ["lfs-objects"] and len(seg) in (2, 3):
            return self._lfs_object(request, method, seg[1:], body)
        repo_type = "model"
        if seg[:1] == ["datasets"]:
            repo_type, seg = "dataset", seg[1:]
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            if method == "POST":
                return self._lfs_batch(request, repo_type, f"{seg[0]}/{seg[1][: -len('.git')]}", self._json(body))
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(request, repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise _HTTPError(404, f"Test Hub has no route for {method} /{'/'.join(seg)}")

    def _api_repo(
        self,
        request: _Handler,
        method: str,
        repo_type: str,
        repo_id: str,
        rest: list[str],
        query: dict[str, str],
        body: bytes,
    ) -> None:
        action = rest[0] if rest else None
        if method == "GET" and (action is None or (action == "revision" and len(rest) == 2)):
            return self._repo_info(request, repo_type, repo_id, rest[1] if rest else None, query)
        if action is not None and action.startswith("xet-") and action.endswith("-token"):
            raise _HTTPError(
                501,
                "The semscale-hf test Hub does not implement Xet storage: set HF_HUB_DISABLE_XET=1 (and "
                "huggingface_hub.constants.HF_HUB_DISABLE_XET = True in-process) to upload through classic LFS.",
            )
        if len(rest) == 2 and action == "preupload" and method == "POST":
            return self._preupload(request, repo_type, repo_id, rest[1], self._json(body))
        if len(rest) == 2 and action == "commit" and method == "POST":
            return self._commit_route(request, repo_type, repo_id, rest[1], body, query)
        if len(rest) >= 2 and action == "tree" and method == "GET":
            return self._tree(request, repo_type, repo_id, rest[1], "/".join(rest[2:]), query)
        if len(rest) == 2 and action == "commits" and method == "GET":
            return self._commits(request, repo_type, repo_id, rest[1])
        raise _HTTPError(404, f"Test Hub has no route for {method} /api/{repo_type}s/{repo_id}/{'/'.join(rest)}")

    # ----------------------------------------------------------------------------------------------------------------
    # Helpers

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body or b"{}")
        except ValueError as err:
            raise _HTTPError(400, f"Request body is not valid JSON: {err}") from None

    @staticmethod
    def _require_auth(request: _Handler) -> None:
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[len("Bearer ") :].strip():
            # This exact message makes hf_raise_for_status report a token problem, not a missing repo.
            raise _HTTPError(401, "Invalid credentials in Authorization header")

    def _get_repo(self, repo_type: str, repo_id: str) -> HubRepo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _get_commit(self, repo: HubRepo, revision: str | None) -> HubCommit:
        commit = repo.at(revision)
        if commit is None:
            raise _HTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    @staticmethod
    def _require_main(revision: str) -> None:
        if revision != "main":
            raise _HTTPError(404, f"The test Hub only supports writes to 'main', got {revision!r}", "RevisionNotFound")

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.url}/{_URL_PREFIXES[repo_type]}{repo_id}"

    def _new_commit(self, repo: HubRepo, summary: str, description: str, files: dict[str, HubFile]) -> HubCommit:
        parent = repo.commits[-1].oid if repo.commits else ""
        seed = f"{repo.repo_type}:{repo.repo_id}:{parent}:{len(repo.commits)}:{summary}:{time.time_ns()}"
        commit = HubCommit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            summary=summary,
            description=description,
            date=datetime.now(timezone.utc),
            files=files,
        )
        repo.commits.append(commit)
        return commit

    # ----------------------------------------------------------------------------------------------------------------
    # Routes

    def _create_repo(self, request: _Handler, payload: dict) -> None:
        self._require_auth(request)
        name, namespace = payload.get("name"), payload.get("organization") or self.user
        repo_type = payload.get("type") or "model"
        if repo_type not in _URL_PREFIXES:
            raise _HTTPError(400, f"The test Hub supports repo types {sorted(_URL_PREFIXES)}, got {repo_type!r}")
        if not isinstance(name, str) or not _NAME_RE.match(name) or not _NAME_RE.match(namespace):
            raise _HTTPError(400, f"Invalid repo name {namespace!r}/{name!r}")
        repo_id = f"{namespace}/{name}"
        url = self._repo_url(repo_type, repo_id)
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # The client's `exist_ok=True` accepts a 409 and reads `url` from its body.
                raise _HTTPError(
                    409, f"You already created this {repo_type} repo", body={"error": "exists", "url": url}
                )
            repo = HubRepo(
                repo_id=repo_id,
                repo_type=repo_type,
                private=payload.get("visibility") == "private" or payload.get("private") is True,
                created_at=datetime.now(timezone.utc),
            )
            # Like the Hub: a new repo has one commit, so it always has a sha.
            self._new_commit(repo, "initial commit", "", {".gitattributes": HubFile(_GITATTRIBUTES, lfs=False)})
            self._repos[(repo_type, repo_id)] = repo
        request.send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, request: _Handler, payload: dict) -> None:
        self._require_auth(request)
        repo_id = f"{payload.get('organization') or self.user}/{payload.get('name')}"
        with self._lock:
            self._get_repo(payload.get("type") or "model", repo_id)
            del self._repos[(payload.get("type") or "model", repo_id)]
        request.send_json(200, {})

    def _validate_yaml(self, request: _Handler, payload: dict) -> None:
        content = payload.get("content", "")
        lines = content.splitlines()
        # No YAML parser in the stdlib: only check that a front matter block is closed, the error a broken
        # model card template most likely produces.
        if lines and lines[0].strip() == "---" and not any(line.strip() == "---" for line in lines[1:]):
            message = "Invalid YAML metadata: the front matter opened by '---' is never closed."
            raise _HTTPError(400, message, body={"errors": [{"message": message}], "warnings": []})
        request.send_json(200, {"errors": [], "warnings": []})

    def _repo_info(
        self, request: _Handler, repo_type: str, repo_id: str, revision: str | None, query: dict[str, str]
    ) -> None:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._get_commit(repo, revision)
            blobs = query.get("blobs", "").lower() in ("1", "true")
            siblings = []
            for path, hub_file in sorted(commit.files.items()):
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    entry = hub_file.tree_entry(path)
                    sibling.update(size=entry["size"], blobId=entry["oid"])
                    if hub_file.lfs:
                        sibling["lfs"] = {
                            "sha256": hub_file.sha256,
                            **{k: entry["lfs"][k] for k in ("size", "pointerSize")},
                        }
                siblings.append(sibling)
            info = {
                "_id": repo_id,
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.oid,
                "lastModified": _format_date(commit.date),
                "createdAt": _format_date(repo.created_at),
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(len(f.data) for f in commit.files.values()),
            }
            if repo_type == "model":
                info["modelId"] = repo_id
        request.send_json(200, info)

    def _preupload(self, request: _Handler, repo_type: str, repo_id: str, revision: str, payload: dict) -> None:
        self._require_auth(request)
        self._require_main(revision)
        with self._lock:
            existing = self._get_repo(repo_type, repo_id).head.files
            answers = []
            for item in payload.get("files", []):
                path, size = item["path"], int(item["size"])
                current = existing.get(path)
                answers.append(
                    {
                        "path": path,
                        "uploadMode": "lfs" if size >= self.lfs_threshold else "regular",
                        "shouldIgnore": False,
                        "oid": current.oid if current is not None else None,
                    }
                )
        request.send_json(200, {"files": answers, "commitOid": self._get_repo(repo_type, repo_id).head.oid})

    def _lfs_batch(self, request: _Handler, repo_type: str, repo_id: str, payload: dict) -> None:
        self._require_auth(request)
        if payload.get("operation") != "upload":
            raise _HTTPError(400, f"The test Hub only serves LFS uploads, got operation {payload.get('operation')!r}")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise _HTTPError(400, f"The test Hub only implements the 'basic' LFS transfer, got {payload['transfers']}")
        with self._lock:
            self._get_repo(repo_type, repo_id)
            objects = []
            for obj in payload.get("objects", []):
                oid, size = obj["oid"], int(obj["size"])
                stored = self._lfs_objects.get(oid)
                if stored is not None and len(stored) == size:
                    objects.append({"oid": oid, "size": size})  # no "actions": already uploaded
                    continue
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {
                            "upload": {"href": f"{self.url}/lfs-objects/{oid}", "header": {}},
                            "verify": {"href": f"{self.url}/lfs-objects/{oid}/verify", "header": {}},
                        },
                    }
                )
        request.send_json(200, {"transfer": "basic", "objects": objects})

    def _lfs_object(self, request: _Handler, method: str, rest: list[str], body: bytes) -> None:
        oid = rest[0]
        if len(rest) == 1 and method == "PUT":
            actual = hashlib.sha256(body).hexdigest()
            if actual != oid:
                raise _HTTPError(400, f"LFS upload rejected: sha256 of the body is {actual}, expected oid {oid}")
            with self._lock:
                self._lfs_objects[oid] = body
            return request.send(200)
        if rest[1:] == ["verify"] and method == "POST":
            payload = self._json(body)
            with self._lock:
                stored = self._lfs_objects.get(oid)
            if stored is None or len(stored) != int(payload.get("size", -1)):
                raise _HTTPError(404, f"LFS object {oid} of size {payload.get('size')} was not uploaded")
            return request.send_json(200, {"success": True})
        raise _HTTPError(404, f"Test Hub has no route for {method} /lfs-objects/{'/'.join(rest)}")

    def _commit_route(
        self, request: _Handler, repo_type: str, repo_id: str, revision: str, body: bytes, query: dict[str, str]
    ) -> None:
        self._require_auth(request)
        self._require_main(revision)
        self.commit_gate.wait(timeout=120)
        if query.get("create_pr") == "1":
            raise _HTTPError(400, "The test Hub does not support pull requests (create_pr=True)")
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError as err:
            raise _HTTPError(400, f"Commit payload is not valid ndjson: {err}") from None
        if not lines or lines[0].get("key") != "header":
            raise _HTTPError(400, "Commit payload must start with a 'header' line")
        header = lines[0]["value"]
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            parent = header.get("parentCommit")
            if parent is not None and parent != repo.head.oid:
                raise _HTTPError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise _HTTPError(400, f"Unsupported encoding {value.get('encoding')!r} for {path!r}")
                    files[path] = HubFile(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = self._lfs_objects.get(value["oid"])
                    if data is None:
                        raise _HTTPError(400, f"LFS object {value['oid']} for {path!r} was never uploaded")
                    if "size" in value and int(value["size"]) != len(data):
                        raise _HTTPError(400, f"Size mismatch for {path!r}: {value['size']} != {len(data)}")
                    files[path] = HubFile(data, lfs=True)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise _HTTPError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise _HTTPError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise _HTTPError(400, f"Unknown commit operation {key!r}")
            commit = self._new_commit(repo, header.get("summary", ""), header.get("description", ""), files)
        request.send_json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{commit.oid}",
                "pullRequestUrl": None,
            },
        )

    def _tree(
        self, request: _Handler, repo_type: str, repo_id: str, revision: str, path: str, query: dict[str, str]
    ) -> None:
        recursive = query.get("recursive", "").lower() in ("1", "true")
        with self._lock:
            files = self._get_commit(self._get_repo(repo_type, repo_id), revision).files
            prefix = path.strip("/") + "/" if path.strip("/") else ""
            entries: dict[str, dict[str, Any]] = {}
            for file_path, hub_file in files.items():
                if not file_path.startswith(prefix):
                    continue
                parts = file_path[len(prefix) :].split("/")
                # Folders between `path` and the file: only the first level unless recursive.
                for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                    folder = prefix + "/".join(parts[:depth])
                    entries[folder] = {
                        "type": "directory",
                        "path": folder,
                        "oid": hashlib.sha1(folder.encode()).hexdigest(),
                    }
                if recursive or len(parts) == 1:
                    entries[file_path] = hub_file.tree_entry(file_path)
            if prefix and not entries:
                raise _HTTPError(404, f"Entry not found: {path}", "EntryNotFound")
        request.send_json(200, [entries[key] for key in sorted(entries)])

    def _commits(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> None:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            head = self._get_commit(repo, revision)
            history = repo.commits[: repo.commits.index(head) + 1]
            items = [
                {
                    "id": commit.oid,
                    "title": commit.summary,
                    "message": commit.description,
                    "authors": [{"user": self.user}],
                    "date": _format_date(commit.date),
                }
                for commit in reversed(history)
            ]
        request.send_json(200, items)

    def _resolve(self, request: _Handler, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        with self._lock:
            commit = self._get_commit(self._get_repo(repo_type, repo_id), revision)
            hub_file = commit.files.get(path)
        if hub_file is None:
            raise _HTTPError(404, f"Entry not found: {path}", "EntryNotFound")
        data, status = hub_file.data, 200
        headers = {
            "ETag": f'"{hub_file.oid}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        if hub_file.lfs:
            headers["X-Linked-Etag"] = f'"{hub_file.sha256}"'
            headers["X-Linked-Size"] = str(len(hub_file.data))
        # A resumed download sends "Range: bytes=<start>-".
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", "").strip())
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data) or end < start:
                raise _HTTPError(416, f"Range not satisfiable for {len(data)} bytes")
            headers["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
            data, status = data[start : end + 1], 206
        headers["Content-Length"] = str(len(data))
        request.send(status, data, headers, content_type="application/octet-stream")
