"""Tests of the loopback Hub (tests/hub_server.py) with the real clients: huggingface_hub, transformers, datasets.

Client code runs in a subprocess because huggingface_hub reads `HF_ENDPOINT` when it is imported.
"""

import hashlib
import http.client
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hub_server
from hub_server import LoopbackHub

loopback_hub = hub_server.loopback_hub  # the shared fixture: a fresh LoopbackHub per test


def run_client(hub: LoopbackHub, hf_home_dir: Path, code: str, *args: str) -> dict:
    """Run `code` in a fresh Python with the hub's env (cache under `hf_home_dir`); return its last stdout line
    parsed as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=hub.client_env(hf_home_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"client failed\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


UPLOAD = """
import json, sys
from huggingface_hub import HfApi
api = HfApi()
url = api.create_repo(sys.argv[1])
again = api.create_repo(sys.argv[1], exist_ok=True)  # 409 from the server, swallowed by the client
info = api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2], commit_message="add files")
tree = api.list_repo_tree(sys.argv[1], recursive=True)
print(json.dumps({"repo_id": url.repo_id, "again": again.repo_id, "oid": info.oid,
                  "lfs": {f.path: f.lfs is not None for f in tree},
                  "commits": [c.title for c in api.list_repo_commits(sys.argv[1])]}))
"""

DOWNLOAD = """
import hashlib, json, sys
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url, get_hf_file_metadata
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
repo = sys.argv[1]
out = {name: hashlib.sha256(open(hf_hub_download(repo, name), "rb").read()).hexdigest()
       for name in ("notes.txt", "weights.safetensors")}
out["etag"] = get_hf_file_metadata(hf_hub_url(repo, "weights.safetensors")).etag
calls = {"missing_file": lambda: hf_hub_download(repo, "nope.txt"),
         "missing_repo": lambda: hf_hub_download("test-user/absent", "notes.txt"),
         "missing_revision": lambda: hf_hub_download(repo, "notes.txt", revision="no-such-branch")}
for key, call in calls.items():
    try:
        call()
        out[key] = None
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as err:
        out[key] = [cls.__name__ for cls in type(err).__mro__]
print(json.dumps(out))
"""


def test_upload_folder_then_download_in_fresh_cache(loopback_hub, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("metric depth in metres\n")
    save_file({"weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)}, str(folder / "weights.safetensors"))
    local = {p.name: p.read_bytes() for p in folder.iterdir()}

    out = run_client(loopback_hub, tmp_path / "uploader", UPLOAD, "test-user/folder-repo", str(folder))
    assert out["repo_id"] == out["again"] == "test-user/folder-repo"
    assert out["commits"] == ["add files", "initial commit"]  # the whole folder is one commit
    assert out["lfs"] == {".gitattributes": False, "notes.txt": False, "weights.safetensors": True}
    stored = loopback_hub.files("test-user/folder-repo", revision=out["oid"])
    assert {k: v for k, v in stored.items() if k != ".gitattributes"} == local
    assert [m for m, p in loopback_hub.request_log if p.endswith("/commit/main")] == ["POST"]
    assert any(m == "PUT" and p.startswith("/lfs-upload/") for m, p in loopback_hub.request_log)

    loopback_hub.request_log.clear()
    out = run_client(loopback_hub, tmp_path / "fresh", DOWNLOAD, "test-user/folder-repo")
    assert out["notes.txt"] == sha256(local["notes.txt"])
    assert out["weights.safetensors"] == out["etag"] == sha256(local["weights.safetensors"])
    assert ("GET", "/test-user/folder-repo/resolve/main/weights.safetensors") in loopback_hub.request_log
    assert "RemoteEntryNotFoundError" in out["missing_file"] and "EntryNotFoundError" in out["missing_file"]
    assert "RepositoryNotFoundError" in out["missing_repo"]
    assert "RevisionNotFoundError" in out["missing_revision"]


REFS = """
import json, sys
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
api, repo, out = HfApi(), sys.argv[1], {}
api.create_repo(repo)
first = api.upload_file(path_or_fileobj=b"version one", path_in_repo="data/value.txt", repo_id=repo)
api.create_tag(repo, tag="v1")
api.upload_file(path_or_fileobj=b"version two", path_in_repo="data/value.txt", repo_id=repo)
api.upload_file(path_or_fileobj=b"extra", path_in_repo="extra.txt", repo_id=repo)
read = lambda rev: open(hf_hub_download(repo, "data/value.txt", revision=rev), "rb").read().decode()
out["v1"], out["main"], out["sha"] = read("v1"), read("main"), read(first.oid)
api.create_branch(repo, branch="dev", revision="v1")
out["dev"] = read("dev")
out["files_v1"] = api.list_repo_files(repo, revision="v1")
out["files_main"] = api.list_repo_files(repo)
refs = api.list_repo_refs(repo)
out["tags"] = {r.name: r.target_commit for r in refs.tags}
out["branches"] = sorted(r.name for r in refs.branches)
out["first"] = first.oid
try:
    api.upload_file(path_or_fileobj=b"late", path_in_repo="late.txt", repo_id=repo, parent_commit=first.oid)
except HfHubHTTPError as err:
    out["stale_parent"] = err.response.status_code
try:
    api.create_tag(repo, tag="v1")
except HfHubHTTPError as err:
    out["tag_again"] = err.response.status_code
api.create_tag(repo, tag="v1", exist_ok=True)
api.delete_branch(repo, branch="dev")
api.delete_tag(repo, tag="v1")
api.delete_file("extra.txt", repo_id=repo)
after = api.list_repo_refs(repo)
out["after"] = [sorted(r.name for r in after.branches), [r.name for r in after.tags], api.list_repo_files(repo)]
print(json.dumps(out))
"""


def test_tags_branches_and_history(loopback_hub, tmp_path):
    out = run_client(loopback_hub, tmp_path, REFS, "test-org/history")
    assert [out["v1"], out["sha"], out["dev"], out["main"]] == ["version one"] * 3 + ["version two"]
    assert out["files_v1"] == [".gitattributes", "data/value.txt"]
    assert out["files_main"] == [".gitattributes", "data/value.txt", "extra.txt"]
    assert out["tags"] == {"v1": out["first"]} and out["branches"] == ["dev", "main"]
    assert out["stale_parent"] == 412 and out["tag_again"] == 409
    assert out["after"] == [["main"], [], [".gitattributes", "data/value.txt"]]
    assert loopback_hub.files("test-org/history", revision=out["first"])["data/value.txt"] == b"version one"


TRANSFORMERS_PUSH = """
import json, sys, torch
from transformers import Dinov2Config, Dinov2Model
torch.manual_seed(0)
config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      image_size=28, patch_size=14)
model = Dinov2Model(config).eval()
model.push_to_hub(sys.argv[1])
pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    torch.save({"pixels": pixels, "out": model(pixel_values=pixels).last_hidden_state}, sys.argv[2])
print(json.dumps({"ok": True}))
"""

TRANSFORMERS_LOAD = """
import json, sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1]).eval()
ref = torch.load(sys.argv[2])
with torch.no_grad():
    out = model(pixel_values=ref["pixels"]).last_hidden_state
print(json.dumps({"equal": torch.equal(out, ref["out"]), "class": type(model).__name__}))
"""


def test_transformers_push_to_hub_then_from_pretrained(loopback_hub, tmp_path):
    reference = tmp_path / "reference.pt"
    run_client(loopback_hub, tmp_path / "pusher", TRANSFORMERS_PUSH, "test-user/tiny-dinov2", str(reference))
    assert {"config.json", "model.safetensors"} <= set(loopback_hub.files("test-user/tiny-dinov2"))

    loopback_hub.request_log.clear()
    out = run_client(loopback_hub, tmp_path / "fresh", TRANSFORMERS_LOAD, "test-user/tiny-dinov2", str(reference))
    assert out == {"equal": True, "class": "Dinov2Model"}
    downloads = [p for m, p in loopback_hub.request_log if m == "GET" and "/resolve/" in p]
    assert {p.rsplit("/", 1)[1] for p in downloads} >= {"config.json", "model.safetensors"}


DATASETS_PUSH = """
import json, sys, datasets
ds = datasets.Dataset.from_dict({"depth_m": [0.0, 1.5, 2.25], "name": ["a", "b", "c"], "label": [0, 1, 2]})
ds.push_to_hub(sys.argv[1])
print(json.dumps({"ok": True}))
"""

DATASETS_LOAD = """
import json, sys, datasets
from huggingface_hub import HfApi
ds = datasets.load_dataset(sys.argv[1], split="train")
tree = HfApi().list_repo_tree(sys.argv[1], repo_type="dataset", recursive=True)
print(json.dumps({"rows": ds.to_dict(), "lfs": sorted(f.path for f in tree if getattr(f, "lfs", None))}))
"""


def test_datasets_push_to_hub_then_load_dataset(loopback_hub, tmp_path):
    run_client(loopback_hub, tmp_path / "pusher", DATASETS_PUSH, "test-user/tiny-rgbd")
    out = run_client(loopback_hub, tmp_path / "fresh", DATASETS_LOAD, "test-user/tiny-rgbd")
    assert out["rows"] == {"depth_m": [0.0, 1.5, 2.25], "name": ["a", "b", "c"], "label": [0, 1, 2]}
    assert out["lfs"] == ["data/train-00000-of-00001.parquet"]  # parquet shards must go through LFS
    readme = loopback_hub.files("test-user/tiny-rgbd", repo_type="dataset")["README.md"].decode()
    assert readme.startswith("---\n") and "dataset_info" in readme


MODEL_CARD = """
import json, sys
from huggingface_hub import HfApi, ModelCard
repo = sys.argv[1]
HfApi().create_repo(repo)
ModelCard("---\\nlicense: apache-2.0\\ntags:\\n- depth-estimation\\n- rgbd\\n---\\n# Tiny\\n").push_to_hub(repo)
card = ModelCard.load(repo)
info = HfApi().model_info(repo)
invalid = {}
for name, readme in [("syntax", b"---\\nlicense: [unclosed\\n---\\n"), ("tags", b"---\\ntags:\\n- a: 1\\n---\\n")]:
    try:
        HfApi().upload_file(path_or_fileobj=readme, path_in_repo="README.md", repo_id=repo)
    except ValueError as err:  # the client turns the server's 400 from /api/validate-yaml into a ValueError
        invalid[name] = str(err)
print(json.dumps({"data": card.data.to_dict(), "text": card.text, "tags": info.tags, "invalid": invalid,
                  "card_license": info.card_data.license}))
"""


def test_model_card_roundtrip(loopback_hub, tmp_path):
    out = run_client(loopback_hub, tmp_path, MODEL_CARD, "test-user/card")
    assert out["data"] == {"license": "apache-2.0", "tags": ["depth-estimation", "rgbd"]}
    assert out["text"].strip() == "# Tiny" and out["card_license"] == "apache-2.0"
    assert out["tags"] == ["depth-estimation", "rgbd"]
    assert set(out["invalid"]) == {"syntax", "tags"} and "tags" in out["invalid"]["tags"]
    assert all("Invalid metadata in README.md" in message for message in out["invalid"].values())
    assert ("POST", "/api/validate-yaml") in loopback_hub.request_log
    assert loopback_hub.files("test-user/card")["README.md"].startswith(b"---\nlicense: apache-2.0\n")  # unchanged


# -- the server's HTTP layer, without the Hugging Face clients ------------------------------------------------------
AUTH = {"Authorization": "Bearer dummy"}


def call(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def test_keep_alive_chunked_upload_range_and_errors():
    payload = bytes(range(256)) * 4
    oid = sha256(payload)
    with LoopbackHub() as hub:
        conn = http.client.HTTPConnection("127.0.0.1", int(hub.endpoint.rsplit(":", 1)[1]), timeout=10)
        resp, _ = call(conn, "POST", "/api/repos/create", {"name": "raw", "type": "dataset"})
        assert resp.status == 401  # writes need a token
        resp, body = call(conn, "POST", "/api/repos/create", {"name": "raw", "type": "dataset"}, AUTH)
        assert resp.status == 200 and json.loads(body)["url"] == f"{hub.endpoint}/datasets/test-user/raw"
        resp, body = call(conn, "POST", "/api/repos/create", {"name": "raw", "organization": "other"}, AUTH)
        assert resp.status == 403

        files = [
            {"path": "a.txt", "sample": "aGVsbG8=", "size": 5},
            {"path": "x.bin", "sample": "aGVsbG8=", "size": 5},
            {"path": "nul.dat", "sample": "AAEC", "size": 3},
            {"path": "big.txt", "sample": "", "size": 11 << 20},
        ]
        resp, body = call(conn, "POST", "/api/datasets/test-user/raw/preupload/main", {"files": files}, AUTH)
        modes = {f["path"]: f["uploadMode"] for f in json.loads(body)["files"]}
        assert modes == {"a.txt": "regular", "x.bin": "lfs", "nul.dat": "lfs", "big.txt": "lfs"}

        batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(payload)}]}
        resp, body = call(conn, "POST", "/datasets/test-user/raw.git/info/lfs/objects/batch", batch, AUTH)
        href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
        assert href.startswith(hub.endpoint)
        # chunked body on a keep-alive connection: the next request on the same socket must still parse
        chunks = iter([payload[:100], payload[100:700], payload[700:]])
        conn.request("PUT", href[len(hub.endpoint) :], body=chunks, encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        resp, body = call(conn, "GET", "/api/whoami-v2", headers=AUTH)
        assert resp.status == 200 and json.loads(body)["name"] == "test-user"
        resp, body = call(conn, "POST", "/datasets/test-user/raw.git/info/lfs/objects/batch", batch, AUTH)
        assert "actions" not in json.loads(body)["objects"][0]  # already stored: nothing to upload

        ndjson = b"\n".join(
            json.dumps(line).encode()
            for line in [
                {"key": "header", "value": {"summary": "raw commit", "description": ""}},
                {"key": "lfsFile", "value": {"path": "blob.bin", "algo": "sha256", "oid": oid, "size": len(payload)}},
                {"key": "file", "value": {"path": "a.txt", "content": "aGVsbG8=", "encoding": "base64"}},
            ]
        )
        resp, body = call(conn, "POST", "/api/datasets/test-user/raw/commit/main", ndjson, AUTH)
        assert resp.status == 200 and json.loads(body)["pullRequestUrl"] is None
        commit = json.loads(body)["commitOid"]

        resp, body = call(conn, "GET", "/datasets/test-user/raw/resolve/main/blob.bin", headers={"Range": "bytes=2-5"})
        assert (resp.status, body, resp.getheader("Content-Range")) == (206, payload[2:6], f"bytes 2-5/{len(payload)}")
        resp, body = call(conn, "GET", "/datasets/test-user/raw/resolve/main/blob.bin", headers={"Range": "bytes=-3"})
        assert (resp.status, body) == (206, payload[-3:])
        resp, body = call(conn, "HEAD", "/datasets/test-user/raw/resolve/main/blob.bin")
        assert body == b"" and resp.getheader("Content-Length") == str(len(payload))
        assert resp.getheader("X-Linked-Etag") == resp.getheader("ETag") == f'"{oid}"'
        assert resp.getheader("X-Repo-Commit") == commit and resp.getheader("X-Linked-Size") == str(len(payload))
        resp, body = call(conn, "GET", "/datasets/test-user/raw/resolve/main/a.txt")
        git_sha1 = hashlib.sha1(b"blob 5\0hello").hexdigest()
        assert (body, resp.getheader("ETag"), resp.getheader("X-Linked-Etag")) == (b"hello", f'"{git_sha1}"', None)

        for path, code in [
            ("/datasets/test-user/raw/resolve/main/missing.txt", "EntryNotFound"),
            ("/datasets/test-user/nothing/resolve/main/a.txt", "RepoNotFound"),
            ("/datasets/test-user/raw/resolve/v9/a.txt", "RevisionNotFound"),
        ]:
            resp, body = call(conn, "GET", path)
            assert (resp.status, resp.getheader("X-Error-Code")) == (404, code) and "error" in json.loads(body)
        resp, body = call(conn, "GET", "/api/spaceships")
        assert resp.status == 404 and "not implemented" in json.loads(body)["error"]
        conn.close()
        assert hub.files("test-user/raw", repo_type="dataset")["blob.bin"] == payload
    with pytest.raises(OSError):  # the server is gone once the context exits
        http.client.HTTPConnection("127.0.0.1", int(hub.endpoint.rsplit(":", 1)[1]), timeout=2).request("GET", "/")
