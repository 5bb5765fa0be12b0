"""Serve one report on 127.0.0.1: the HTML page and its figure files, nothing else.

A plain directory server would expose whatever else sits beside the report (a home folder, a
run's data); this one answers only the files it was given, on the loopback interface only, and
stops on Ctrl-C or after an optional number of seconds.
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HOST = "127.0.0.1"


def served_files(report: Path, figures: Path | None = None) -> dict[str, Path]:
    """URL path -> file: '/' and '/<report name>' for the page, '/<figures>/<name>' for each figure."""
    files = {"/": report, f"/{report.name}": report}
    if figures is not None and figures.is_dir():
        files.update({f"/{figures.name}/{f.name}": f for f in sorted(figures.iterdir()) if f.is_file()})
    return files


def make_server(files: dict[str, Path], port: int = 0) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1 (port 0: any free port) answering GET/HEAD for `files` only."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: bool) -> None:
            path = files.get(unquote(urlsplit(self.path).path))
            if path is None or not path.is_file():
                self.send_error(HTTPStatus.NOT_FOUND, "not part of this report")
                return
            data = path.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._send(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._send(False)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # the command prints the address; per-request lines would bury it

    return ThreadingHTTPServer((HOST, port), Handler)


def serve(
    files: dict[str, Path], port: int = 0, seconds: float | None = None, announce: Callable[[str], None] = print
) -> None:
    """Serve until Ctrl-C, or for `seconds` when given; `announce` receives the page's address."""
    server = make_server(files, port)
    page = next(k for k in files if k != "/")
    announce(f"http://{HOST}:{server.server_address[1]}{page}")
    timer = threading.Timer(seconds, server.shutdown) if seconds else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if timer:
            timer.cancel()
        server.server_close()
