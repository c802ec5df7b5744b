"""Real git repositories for the git port's tests and benchmark.

`commit` writes a snapshot (path -> bytes) as a commit with pygit2; `GitHttpServer` serves
bare repositories over git's smart-HTTP protocol (`git http-backend` as CGI) behind GitHub
style basic authentication, so a fetch really sends its token and a wrong one really fails.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import pygit2
from pygit2.enums import FileMode

SIGNATURE = pygit2.Signature("Nightshift Tests", "tests@nightshift.invalid", 1_700_000_000, 0)
TOKEN_USER = "x-access-token"
UNAUTHORIZED = b"authentication required\n"


def commit(
    repo: pygit2.Repository,
    files: Mapping[str, bytes],
    *,
    parents: tuple[str, ...] = (),
    ref: str | None = None,
    message: str = "change",
) -> str:
    """Commit the complete snapshot `files` (nested paths allowed); move `ref` to it."""
    tree = _tree(repo, {tuple(path.split("/")): data for path, data in files.items()})
    oid = repo.create_commit(None, SIGNATURE, SIGNATURE, message, tree, list(parents))
    if ref is not None:
        repo.references.create(ref, oid, force=True)
    return str(oid)


def _tree(repo: pygit2.Repository, files: Mapping[tuple[str, ...], bytes]) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    subtrees: dict[str, dict[tuple[str, ...], bytes]] = {}
    for parts, data in files.items():
        if len(parts) == 1:
            builder.insert(parts[0], repo.create_blob(data), FileMode.BLOB)
        else:
            subtrees.setdefault(parts[0], {})[parts[1:]] = data
    for name, children in subtrees.items():
        builder.insert(name, _tree(repo, children), FileMode.TREE)
    return builder.write()


def basic_auth(token: str) -> str:
    """The Authorization header GitHub expects for an installation token."""
    return "Basic " + base64.b64encode(f"{TOKEN_USER}:{token}".encode()).decode()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorized: bool


class GitHttpServer:
    """`git http-backend` for the bare repositories under `root`, on 127.0.0.1.

    With a `token`, every request must carry it as GitHub's basic authentication
    (`x-access-token:<token>`); others get 401 with a `WWW-Authenticate` challenge.
    """

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self)

            def do_POST(self) -> None:
                server._serve(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the request list is the log

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/{repo}.git"

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        given = handler.headers.get("Authorization", "")
        authorized = self.token is None or hmac.compare_digest(given, basic_auth(self.token))
        self.requests.append(Request(handler.command, handler.path, authorized))
        if not authorized:
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="git"')
            handler.send_header("Content-Length", str(len(UNAUTHORIZED)))
            handler.end_headers()
            handler.wfile.write(UNAUTHORIZED)
            return
        body = _request_body(handler)
        url = urlsplit(handler.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": TOKEN_USER,
        }
        for header, variable in (
            ("Git-Protocol", "GIT_PROTOCOL"),
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
        ):
            if header in handler.headers:
                env[variable] = handler.headers[header]
        done = subprocess.run(
            ["git", "http-backend"], input=body, capture_output=True, env=env, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")  # http-backend ends lines CRLF
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _request_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
    chunks: list[bytes] = []
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            handler.rfile.readline()
            return b"".join(chunks)
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()
