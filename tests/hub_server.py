"""A loopback Hugging Face Hub for tests: the part of the Hub HTTP protocol that `huggingface_hub`, `datasets` and
`transformers` use to push, list and download files (no Xet, no pull requests, no spaces runtime).

The real Hub cannot be reached from dev machines or CI, so tests start this server on 127.0.0.1 and run client
code in a subprocess whose environment points `HF_ENDPOINT` at it (``huggingface_hub`` reads the variable at
import time, hence the subprocess). Storage is in memory with full history: every commit is an immutable
snapshot ``path -> blob``; branches and tags point at commit shas. The endpoints are listed in `_Handler.ROUTES`;
anything else answers 404 with a JSON error naming the unimplemented route.

    with LoopbackHub() as hub:
        subprocess.run([sys.executable, "-c", code], env=hub.client_env(tmp_path), check=True)
        assert hub.files("test-user/repo")["config.json"] == b"..."
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml  # pyyaml is a dependency of the project; the Hub parses README front matter with a YAML parser too

MAX_BODY_BYTES = 1 << 30  # refuse request bodies over 1 GiB instead of buffering without limit
MAX_REGULAR_BYTES = 10 * 1024 * 1024  # the Hub refuses non-LFS files above 10 MB
LFS_PATTERNS = (  # what the Hub writes into the `.gitattributes` of every new repo
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz *.onnx "
    "*.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar *.tflite *.tgz "
    "*.wasm *.xz *.zip *.zst *tfevents*"
).split()
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
_INFO_CONSTANTS = {"gated": False, "disabled": False, "downloads": 0, "likes": 0}
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_T = r"(?P<type>model|dataset|space)s"  # /api/{type}s/...
_R = rf"(?P<repo>{_NAME}/{_NAME})"
_PREFIX = r"(?:(?P<prefix>datasets|spaces)/)?"  # /{prefix}{repo_id}/resolve/... (models have no prefix)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass(frozen=True)
class Blob:
    """File content plus the hashes the Hub reports: git blob sha1 (of the LFS pointer for LFS files) and sha256."""

    data: bytes
    lfs: bool
    sha256: str = field(init=False)
    oid: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())
        git_content = self.pointer if self.lfs else self.data
        object.__setattr__(self, "oid", hashlib.sha1(b"blob %d\0" % len(git_content) + git_content).hexdigest())

    @property
    def pointer(self) -> bytes:
        return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
            hashlib.sha256(self.data).hexdigest().encode(),
            len(self.data),
        )

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, Blob]

    def summary(self) -> dict:
        return {"id": self.sha, "title": self.title, "message": self.message, "date": self.date}


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)

    def history(self, commit: Commit) -> list[Commit]:
        """`commit` and its ancestors, newest first (bounded: every commit is visited at most once)."""
        out = [commit]
        while out[-1].parent is not None and len(out) <= len(self.commits):
            out.append(self.commits[out[-1].parent])
        return out

    def add_commit(self, branch: str, title: str, message: str, files: dict[str, Blob]) -> Commit:
        parent = self.branches.get(branch)
        seed = json.dumps(
            [parent, title, time.time_ns(), len(self.commits), sorted((p, b.oid) for p, b in files.items())]
        )
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, _now(), dict(files))
        self.commits[commit.sha] = commit
        self.branches[branch] = commit.sha
        return commit


class HubError(Exception):
    """An error answer: HTTP status, the Hub's `X-Error-Code` (which the client maps to an exception) and a message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def _card_data(readme: bytes) -> dict | None:
    """The YAML front matter of a README as a dict, None when there is none; raises ValueError if it is invalid."""
    text = readme.decode("utf-8", errors="replace").replace("\r\n", "\n")
    match = re.match(r"^---\n(.*?)\n?---\s*(\n|$)", text, flags=re.S)
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise ValueError(f"Invalid YAML in README front matter: {exc}") from exc
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"README metadata must be a YAML mapping, got {type(data).__name__}")
    for key in ("tags", "datasets", "language", "license", "metrics", "pipeline_tag", "library_name"):
        value = data.get(key)
        if value is not None and not (
            isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise ValueError(f'"{key}" must be a string or a list of strings, got {value!r}')
    return data


class LoopbackHub:
    """In-memory Hub served on 127.0.0.1 (a free port) while the context is open.

    Attributes:
        endpoint: base URL, e.g. ``http://127.0.0.1:40123``; pass it as ``HF_ENDPOINT``.
        request_log: ``(method, unquoted path without query)`` of every request, in arrival order.
    """

    def __init__(self, user: str = "test-user", orgs: tuple[str, ...] = ("test-org",)) -> None:
        self.user, self.orgs = user, tuple(orgs)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}  # sha256 -> content, filled by LFS uploads before the commit
        self.request_log: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> LoopbackHub:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.block_on_close = False  # keep-alive connections of finished clients must not delay shutdown
        server.hub = self  # type: ignore[attr-defined]
        self._server = server
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def client_env(self, tmp_path: str | os.PathLike) -> dict[str, str]:
        """Environment for a client subprocess: the current one plus the Hub endpoint, a dummy token, Xet off, and
        every cache under ``tmp_path/hf_home`` (a new ``tmp_path`` gives an empty cache)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_TOKEN="dummy-token",
            HF_HOME=str(Path(tmp_path) / "hf_home"),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_DATASETS_DISABLE_PROGRESS_BARS="1",
            NO_PROXY=no_proxy,
            no_proxy=no_proxy,
        )
        return env

    # -- assertions helpers ----------------------------------------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Content of every file of `repo_id` at `revision` (branch, tag or commit sha)."""
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            commit = repo.resolve(revision) if repo is not None else None
            if commit is None:
                raise KeyError(f"{repo_type} {repo_id!r} has no revision {revision!r}")
            return {path: blob.data for path, blob in commit.files.items()}

    # -- state access used by the handler --------------------------------------------------------------------------
    def repo(self, repo_type: str, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real Hub; needs exact Content-Length on every answer
    timeout = 30  # idle keep-alive connections end after this many seconds
    server_version = "LoopbackHub/1.0"

    ROUTES: list[tuple[str, re.Pattern, str]] = [
        (m, re.compile(p), h)
        for m, p, h in [
            ("GET", r"/api/whoami-v2", "whoami"),
            ("POST", r"/api/repos/create", "create_repo"),
            ("DELETE", r"/api/repos/delete", "delete_repo"),
            ("POST", r"/api/validate-yaml", "validate_yaml"),
            ("GET", rf"/api/{_T}/{_R}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
            ("POST", rf"/api/{_T}/{_R}/preupload/(?P<rev>[^/]+)", "preupload"),
            ("POST", rf"/api/{_T}/{_R}/commit/(?P<rev>[^/]+)", "commit"),
            ("GET", rf"/api/{_T}/{_R}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
            ("POST", rf"/api/{_T}/{_R}/paths-info/(?P<rev>[^/]+)", "paths_info"),
            ("GET", rf"/api/{_T}/{_R}/commits/(?P<rev>[^/]+)", "list_commits"),
            ("GET", rf"/api/{_T}/{_R}/refs", "refs"),
            ("POST", rf"/api/{_T}/{_R}/tag/(?P<rev>[^/]+)", "create_tag"),
            ("DELETE", rf"/api/{_T}/{_R}/tag/(?P<rev>[^/]+)", "delete_tag"),
            ("POST", rf"/api/{_T}/{_R}/branch/(?P<rev>[^/]+)", "create_branch"),
            ("DELETE", rf"/api/{_T}/{_R}/branch/(?P<rev>[^/]+)", "delete_branch"),
            ("POST", rf"/{_PREFIX}{_R}\.git/info/lfs/objects/batch", "lfs_batch"),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
            ("GET", rf"/{_PREFIX}{_R}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
            ("HEAD", rf"/{_PREFIX}{_R}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        ]
    ]

    # -- plumbing --------------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:  # silence stderr; `request_log` keeps the record
        pass

    @property
    def hub(self) -> LoopbackHub:
        return self.server.hub  # type: ignore[attr-defined]

    def _read_body(self) -> bytes:
        """Read the whole request body (Content-Length or chunked), so the next request on the connection parses."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            for _ in range(MAX_BODY_BYTES):  # every chunk holds >= 1 byte, so this bound is never the limit
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    for _ in range(1024):  # optional trailer lines, then an empty line
                        if self.rfile.readline(65536).strip() == b"":
                            break
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    raise HubError(413, "Request body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(16)  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HubError(413, "Request body too large")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        with self.hub.lock:
            self.hub.request_log.append((self.command, unquote(url.path)))
        try:
            self.body = self._read_body()
            for method, pattern, name in self.ROUTES:
                match = pattern.fullmatch(url.path)
                if match and method == self.command:
                    args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    if "prefix" in args:
                        args["type"] = args.pop("prefix")[:-1]
                    elif "repo" in args and "type" not in args:
                        args["type"] = "model"
                    with self.hub.lock:  # one request at a time touches the state: simple and race-free
                        getattr(self, f"_h_{name}")(**args)
                    return
            raise HubError(404, f"{self.command} {url.path} is not implemented by LoopbackHub")
        except HubError as err:
            # header values must be one latin-1 line (YAML errors span lines, paths may be unicode)
            header_message = " ".join(err.message.split()).encode("ascii", "replace").decode()
            headers = {"X-Error-Message": header_message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json({"error": err.message}, status=err.status, headers=headers)
        except Exception as exc:  # noqa: BLE001 - a test server answers 500 and keeps serving
            self.close_connection = True
            self._json({"error": f"LoopbackHub internal error: {exc!r}"}, status=500)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: object, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _json_body(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
        except json.JSONDecodeError as exc:
            raise HubError(400, f"Request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object")
        return data

    def _flag(self, name: str) -> bool:
        return any(v.lower() in ("1", "true") for v in self.query.get(name, []))

    @property
    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")

    def _require_token(self) -> None:
        if not self._authorized:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, type: str, repo: str, write: bool = False) -> Repo:
        if write:
            self._require_token()
        return self.hub.repo(type, repo, self._authorized)

    def _branch_head(self, repo: Repo, rev: str) -> Commit:
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev} is not a branch", "RevisionNotFound")
        return repo.commits[repo.branches[rev]]

    def _url(self, type: str, repo: str) -> str:
        return f"{self.hub.endpoint}/{'' if type == 'model' else type + 's/'}{repo}"

    # -- account and repos -----------------------------------------------------------------------------------------
    def _h_whoami(self) -> None:
        self._require_token()
        user = self.hub.user
        orgs = [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in self.hub.orgs]
        auth = {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}}
        me = {"type": "user", "id": "0" * 24, "name": user, "fullname": user, "email": f"{user}@example.com"}
        self._json({**me, "emailVerified": True, "orgs": orgs, "auth": auth})

    def _target(self) -> tuple[str, str, dict]:
        data = self._json_body()
        repo_type = data.get("type") or "model"
        namespace = data.get("organization") or self.hub.user
        if repo_type not in ("model", "dataset", "space") or not isinstance(data.get("name"), str):
            raise HubError(400, f"Invalid repo type {repo_type!r} or name {data.get('name')!r}")
        return repo_type, f"{namespace}/{data['name']}", data

    def _h_create_repo(self) -> None:
        self._require_token()
        repo_type, repo_id, data = self._target()
        if not re.fullmatch(_R, repo_id):
            raise HubError(400, f"Invalid repo id {repo_id!r}: letters, digits, '.', '_', '-' and up to 96 chars")
        if repo_id.split("/")[0] not in (self.hub.user, *self.hub.orgs):
            raise HubError(403, f"You don't have the rights to create a {repo_type} under {repo_id.split('/')[0]}")
        url = self._url(repo_type, repo_id)
        if (repo_type, repo_id) in self.hub.repos:
            self._json({"error": f"You already created this {repo_type} repo", "url": url}, status=409)
            return
        private = data.get("private") is True or data.get("visibility") in ("private", "protected")
        repo = Repo(repo_type, repo_id, private, _now())
        # Like the Hub: a new repo has one commit holding the default `.gitattributes`, so `main` always exists.
        repo.add_commit("main", "initial commit", "", {".gitattributes": Blob(DEFAULT_GITATTRIBUTES, lfs=False)})
        self.hub.repos[(repo_type, repo_id)] = repo
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _h_delete_repo(self) -> None:
        self._require_token()
        repo_type, repo_id, _ = self._target()
        if self.hub.repos.pop((repo_type, repo_id), None) is None:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        self._json({})

    def _h_validate_yaml(self) -> None:
        content = self._json_body().get("content")
        if not isinstance(content, str):
            raise HubError(400, '"content" must be a string')
        try:
            data = _card_data(content.encode())
        except ValueError as exc:
            self._json({"error": str(exc), "errors": [{"message": str(exc)}], "warnings": []}, status=400)
            return
        warnings = [] if data else [{"message": "empty or missing yaml metadata in repo card"}]
        self._json({"errors": [], "warnings": warnings})

    def _h_repo_info(self, type: str, repo: str, rev: str = "main") -> None:
        r = self._repo(type, repo)
        commit = self.hub.commit_at(r, rev)
        blobs = self._flag("blobs")

        def sibling(path: str, blob: Blob) -> dict:
            if not blobs:
                return {"rfilename": path}
            lfs = {"size": len(blob.data), "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
            return {"rfilename": path, "size": len(blob.data), "blobId": blob.oid, **({"lfs": lfs} if blob.lfs else {})}

        try:
            card = _card_data(commit.files["README.md"].data) if "README.md" in commit.files else None
        except ValueError:
            card = None
        tags = card.get("tags") if card else None
        info = {"id": repo, "author": repo.split("/")[0], "sha": commit.sha, "private": r.private, **_INFO_CONSTANTS}
        info.update(lastModified=commit.date, createdAt=r.created_at)
        info["tags"] = [tags] if isinstance(tags, str) else list(tags or [])
        info["siblings"] = [sibling(p, b) for p, b in sorted(commit.files.items())]
        if card is not None:
            info["cardData"] = card
            info.update({k: card[k] for k in ("library_name", "pipeline_tag") if k in card and type == "model"})
        self._json(info)

    # -- uploads ---------------------------------------------------------------------------------------------------
    def _h_preupload(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo, write=True)
        head = self._branch_head(r, rev)
        attributes = head.files.get(".gitattributes", Blob(b"", lfs=False)).data.decode("utf-8", errors="replace")
        patterns = [line.split()[0] for line in attributes.splitlines() if "filter=lfs" in line]
        files = self._json_body().get("files")
        if not isinstance(files, list):
            raise HubError(400, '"files" must be a list')
        answer = []
        for f in files:
            path, size, sample = f["path"], int(f["size"]), base64.b64decode(f.get("sample", ""))
            name_match = any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(posixpath.basename(path), p) for p in patterns)
            # git's own binary test (a NUL byte in the sample) plus the Hub's size limit for plain git blobs
            lfs = name_match or b"\0" in sample or size > MAX_REGULAR_BYTES
            existing = head.files.get(path)
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.oid)
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": answer, "commitOid": head.sha})

    def _h_lfs_batch(self, type: str, repo: str) -> None:
        self._repo(type, repo, write=True)
        data = self._json_body()
        if data.get("operation") != "upload":
            raise HubError(422, "LoopbackHub only implements the LFS 'upload' operation")
        objects = []
        for obj in data.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.hub.lfs_store:  # objects already stored get no action, as on the Hub
                href = f"{self.hub.endpoint}/lfs-upload/{oid}?size={size}"
                entry["actions"] = {"upload": {"href": href, "expires_in": 3600}}
            objects.append(entry)
        body = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        self._send(200, body, "application/vnd.git-lfs+json")

    def _h_lfs_upload(self, oid: str) -> None:
        expected_size = int(self.query.get("size", ["-1"])[0])
        if hashlib.sha256(self.body).hexdigest() != oid or expected_size not in (-1, len(self.body)):
            raise HubError(400, f"Uploaded content does not match oid {oid} / size {expected_size}")
        self.hub.lfs_store[oid] = self.body
        self._send(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(self.body).hexdigest()}"'})

    def _h_commit(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo, write=True)
        if self._flag("create_pr"):
            raise HubError(400, "LoopbackHub does not implement pull requests (create_pr)")
        head = self._branch_head(r, rev)
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first NDJSON line of a commit must be the header")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, head.sha):
            raise HubError(412, f"A commit has happened since {header['parentCommit']}. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "").strip("/")
            if key == "file":
                content = value["content"]
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                files[path] = Blob(data, lfs=False)
            elif key == "lfsFile":
                data = self.hub.lfs_store.get(value.get("oid"))
                if data is None or value.get("size", len(data)) != len(data):
                    raise HubError(422, f"LFS object {value.get('oid')} for {path} was not uploaded (or wrong size)")
                files[path] = Blob(data, lfs=True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path + "/") or not path]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        if "README.md" in files:
            try:
                _card_data(files["README.md"].data)
            except ValueError as exc:
                raise HubError(400, f"Invalid metadata in README.md: {exc}") from exc
        commit = r.add_commit(rev, header.get("summary") or "update", header.get("description") or "", files)
        url = f"{self._url(type, repo)}/commit/{commit.sha}"
        self._json({"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None})

    # -- listing ---------------------------------------------------------------------------------------------------
    def _entry(self, r: Repo, commit: Commit, path: str, expand: bool) -> dict | None:
        """Tree/paths-info entry for a file or folder of `commit`; None if `path` is neither."""
        blob = commit.files.get(path)
        if blob is not None:
            entry = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
        else:
            below = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(path + "/"))
            if not below:
                return None
            entry = {"type": "directory", "oid": hashlib.sha1(json.dumps(below).encode()).hexdigest(), "size": 0}
            entry["path"] = path
        if expand:  # last commit that changed the entry: walk back while the parent has the same content there

            def signature(c: Commit) -> object:
                if path in c.files:
                    return c.files[path].oid
                return [(p, b.oid) for p, b in sorted(c.files.items()) if p.startswith(path + "/")]

            history, last = r.history(commit), commit
            for older in history[1:]:
                if signature(older) != signature(last):
                    break
                last = older
            entry["lastCommit"] = last.summary()
        return entry

    def _h_tree(self, type: str, repo: str, rev: str, path: str = "") -> None:
        r = self._repo(type, repo)
        commit = self.hub.commit_at(r, rev)
        path = path.strip("/")
        prefix = path + "/" if path else ""
        if path and (path in commit.files or not any(p.startswith(prefix) for p in commit.files)):
            raise HubError(404, f"{path} is not a folder at {rev}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        recursive, children = self._flag("recursive"), set()
        for p in commit.files:
            if p.startswith(prefix):
                parts = p[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                children.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        expand = self._flag("expand")
        self._json([self._entry(r, commit, p, expand) for p in sorted(children)])

    def _h_paths_info(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo)
        commit = self.hub.commit_at(r, rev)
        if "json" in self.headers.get("Content-Type", ""):
            data = self._json_body()
            paths, expand = data.get("paths", []), data.get("expand") in (True, "true", "1")
        else:
            form = parse_qs(self.body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), any(v.lower() in ("1", "true") for v in form.get("expand", []))
        entries = [self._entry(r, commit, p.strip("/"), expand) for p in ([paths] if isinstance(paths, str) else paths)]
        self._json([e for e in entries if e is not None])

    def _h_list_commits(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo)
        authors = [{"user": self.hub.user}]
        self._json([{**c.summary(), "authors": authors} for c in r.history(self.hub.commit_at(r, rev))])

    # -- refs ------------------------------------------------------------------------------------------------------
    def _h_refs(self, type: str, repo: str) -> None:
        r = self._repo(type, repo)

        def refs(kind: str, names: dict[str, str]) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(names.items())]

        self._json(
            {"branches": refs("heads", r.branches), "tags": refs("tags", r.tags), "converts": [], "pullRequests": []}
        )

    def _new_ref_name(self, r: Repo, name: object) -> str:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-][A-Za-z0-9._/-]{0,99}", name):
            raise HubError(400, f"Invalid reference name {name!r}")
        if name in r.branches or name in r.tags:
            raise HubError(409, f"Reference {name} already exists")
        if re.fullmatch(r"[0-9a-f]{40}", name):
            raise HubError(400, f"Reference name {name} looks like a commit sha")
        return name

    def _h_create_tag(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo, write=True)
        commit = self.hub.commit_at(r, rev)
        r.tags[self._new_ref_name(r, self._json_body().get("tag"))] = commit.sha
        self._json({})

    def _h_delete_tag(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo, write=True)
        if r.tags.pop(rev, None) is None:
            raise HubError(404, f"Tag {rev} not found", "RevisionNotFound")
        self._json({})

    def _h_create_branch(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo, write=True)
        commit = self.hub.commit_at(r, self._json_body().get("startingPoint") or "main")
        r.branches[self._new_ref_name(r, rev)] = commit.sha
        self._json({})

    def _h_delete_branch(self, type: str, repo: str, rev: str) -> None:
        r = self._repo(type, repo, write=True)
        if rev == "main":
            raise HubError(403, "The main branch cannot be deleted")
        if r.branches.pop(rev, None) is None:
            raise HubError(404, f"Branch {rev} not found", "RevisionNotFound")
        self._json({})

    # -- downloads -------------------------------------------------------------------------------------------------
    def _h_resolve(self, type: str, repo: str, rev: str, path: str) -> None:
        r = self._repo(type, repo)
        commit = self.hub.commit_at(r, rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {"ETag": f'"{blob.etag}"', "X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data, status, size = blob.data, 200, len(blob.data)
        range_header = self.headers.get("Range")
        if range_header:
            # one range only ("bytes=a-b", "bytes=a-", "bytes=-n"): what huggingface_hub and fsspec send
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            first, last = match.groups() if match else ("", "")
            start = int(first) if first else max(size - int(last or size + 1), 0)
            end = min(int(last), size - 1) if first and last else size - 1
            if not (first or last) or start >= size or start > end:
                raise HubError(
                    416, f"Range {range_header!r} not satisfiable", headers={"Content-Range": f"bytes */{size}"}
                )
            data, status = data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, data, "application/octet-stream", headers)


@pytest.fixture
def loopback_hub():
    """A fresh :class:`LoopbackHub` per test, stopped at the end of the test."""
    with LoopbackHub() as hub:
        yield hub
