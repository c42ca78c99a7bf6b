"""A local Hugging Face Hub for tests: the requests huggingface_hub and timm make, answered on 127.0.0.1.

Serves repos given as ``{repo_id: {filename: bytes}}`` with the headers the client relies on: ``X-Repo-Commit``,
``ETag`` (the file's sha256, as the Hub gives for LFS files), ``Content-Length``, ``Accept-Ranges`` and HTTP Range
(206) for resumed downloads; ``X-Error-Code`` (RepoNotFound, EntryNotFound, GatedRepo) on 404/401/403; and
``/api/models/<repo>`` model info. Every request is recorded, and a file can be set to drop the connection halfway.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "4b1d0c0ffee4b1d0c0ffee4b1d0c0ffee4b1d0c0"


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class HubState:
    repos: dict[str, dict[str, bytes]]
    gated: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)  # filename -> how many GETs still drop halfway
    lock: threading.Lock = field(default_factory=threading.Lock)

    def downloads(self, filename: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path
                and (filename is None or r.path.endswith("/" + filename))]


def _handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _record(self) -> None:
            with state.lock:
                state.requests.append(Request(self.command, self.path, self.headers.get("Range")))

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            self._record()
            path = self.path.split("?")[0]
            info = re.fullmatch(r"/api/models/(.+?)(?:/revision/[^/]+)?", path)
            if info:
                return self._model_info(info.group(1))
            match = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path)
            if not match:
                return self._error(404, "RepoNotFound", "Repository not found")
            repo_id, _revision, filename = match.groups()
            if repo_id in state.gated:
                return self._error(401, "GatedRepo", "Access to model is restricted. You must be authenticated.")
            if repo_id not in state.repos:
                return self._error(404, "RepoNotFound", "Repository not found")
            files = state.repos[repo_id]
            if filename not in files:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on main")
            self._file(files[filename], filename)

        def _model_info(self, repo_id: str) -> None:
            if repo_id in state.gated:
                return self._error(401, "GatedRepo", "Access to model is restricted.")
            if repo_id not in state.repos:
                return self._error(404, "RepoNotFound", "Repository not found")
            body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False, "gated": False,
                               "siblings": [{"rfilename": name, "size": len(data)}
                                            for name, data in state.repos[repo_id].items()]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _file(self, data: bytes, filename: str) -> None:
            start = 0
            requested = self.headers.get("Range")
            if requested:
                start = int(re.fullmatch(r"bytes=(\d+)-\d*", requested).group(1))
            self.send_response(206 if requested else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            if requested:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if self.command == "HEAD":
                return
            with state.lock:
                drop = state.drops.get(filename, 0) > 0
                if drop:
                    state.drops[filename] -= 1
            if drop:  # half the rest, then the connection dies (as a flaky network would)
                self.wfile.write(data[start:start + (len(data) - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data[start:])

    return Handler


class HubServer:
    """``with HubServer(repos) as hub: ... hub.url ... hub.state.requests``."""

    def __init__(self, repos: dict[str, dict[str, bytes]], gated: set[str] | None = None) -> None:
        self.state = HubState(repos, gated or set())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
