"""A small model hub on 127.0.0.1 that serves checkpoint folders over HTTP the way huggingface.co does.

- ``GET /api/models/<org>/<name>[/revision/<rev>]``: the model's info with its files and sizes;
- ``HEAD|GET /<org>/<name>/resolve/<rev>/<path>``: small files answer with ``ETag``,
  ``X-Repo-Commit`` and ``Content-Length``; weights (``*.safetensors``) answer ``302`` to a
  content address with ``X-Linked-Etag`` and ``X-Linked-Size``, as the hub's LFS files do;
- ``GET /cdn/<sha256>``: the bytes, honouring ``Range: bytes=N-``.

``break_file(path, times, at)`` makes the next ``times`` downloads of a file send the headers
for the whole file, ``at`` of its bytes, and then drop the connection. Every request is recorded
in ``requests`` as ``(method, path, Range header)``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalHub:
    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.breaks: dict[str, list] = {}  # sha256 -> [times left, bytes to send]
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---- setup ------------------------------------------------------------------------------

    def add_folder(self, repo_id: str, folder: Path) -> None:
        """Serve every file under ``folder`` as the repository ``repo_id``."""
        files = {}
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                files[p.relative_to(folder).as_posix()] = p.read_bytes()
        self.repos[repo_id] = files

    def break_file(self, repo_id: str, path: str, times: int = 1, at: float = 0.5) -> None:
        data = self.repos[repo_id][path]
        with self.lock:
            self.breaks[_sha256(data)] = [times, int(len(data) * at)]

    def start(self) -> "LocalHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ranges(self, path_part: str) -> list[str]:
        """The Range headers of the downloads whose path contains ``path_part``."""
        return [r for m, p, r in self.requests if m == "GET" and path_part in p]

    # ---- serving ------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        with self.lock:
            self.requests.append(("HEAD" if head else "GET", path, h.headers.get("Range", "")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._model_info("/".join(parts[2:4]), h)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve("/".join(parts[:2]), "/".join(parts[4:]), h, head)
        if parts[0] == "cdn" and len(parts) == 2:
            return self._blob(parts[1], h, head)
        self._send(h, 404, b'{"error": "Not found"}', {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"})

    def _model_info(self, repo_id: str, h) -> None:
        files = self.repos.get(repo_id)
        if files is None:
            return self._send(h, 401, b'{"error": "Repository not found"}',
                              {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound"})
        siblings = []
        for name, data in files.items():
            entry = {"rfilename": name, "size": len(data), "blobId": _git_sha1(data)}
            if _is_lfs(name):
                entry["lfs"] = {"sha256": _sha256(data), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        body = {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False,
                "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings}
        self._send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, name: str, h, head: bool) -> None:
        data = self.repos.get(repo_id, {}).get(name)
        if data is None:
            return self._send(h, 404, b'{"error": "Entry not found"}',
                              {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"})
        common = {"X-Repo-Commit": COMMIT}
        if _is_lfs(name):
            sha = _sha256(data)
            host = h.headers.get("Host")
            return self._send(h, 302, b"", {**common, "Location": f"http://{host}/cdn/{sha}",
                                               "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                                               "ETag": f'"{_git_sha1(data)}"'}, head=True)
        self._send_range(h, data, {**common, "ETag": f'"{_git_sha1(data)}"'}, head)

    def _blob(self, sha: str, h, head: bool) -> None:
        for files in self.repos.values():
            for data in files.values():
                if _is_lfs_data(data, sha):
                    return self._send_range(h, data, {"ETag": f'"{sha}"'}, head, breaks=sha)
        self._send(h, 404, b"not found", {})

    def _send_range(self, h, data: bytes, headers: dict, head: bool, breaks: str | None = None) -> None:
        start = 0
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        body = data[start:]
        status = 206 if start else 200
        if start:
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        cut = None
        if breaks and not head:
            with self.lock:
                rule = self.breaks.get(breaks)
                if rule and rule[0] > 0 and rule[1] > start:
                    rule[0] -= 1
                    cut = rule[1] - start
        if cut is None:
            return self._send(h, status, body, headers, head=head)
        h.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body[:cut])
        h.wfile.flush()
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, h, status: int, body: bytes, headers: dict, head: bool = False) -> None:
        h.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)


def _is_lfs(name: str) -> bool:
    return name.endswith(".safetensors")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_lfs_data(data: bytes, sha: str) -> bool:
    return _sha256(data) == sha


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
