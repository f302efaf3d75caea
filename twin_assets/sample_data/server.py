"""Serves the sample site on 127.0.0.1, plus a few fixture routes that misbehave on purpose.

Fixture routes (used by the tests and by the demo's failure cases):
- `/_fixtures/slow?seconds=N`: answers after N seconds (timeouts),
- `/_fixtures/huge?mb=N`: an N-MiB page (maximum page size),
- `/_fixtures/status/<code>`: that HTTP status.

Run standalone: `python -m twin_assets.sample_data.server --port 8765 --pid-file PATH`.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

SITE_DIR = Path(__file__).resolve().parent / "site"


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "text/html; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.startswith("/_fixtures/"):
            return self._fixture(url)
        return super().do_GET()

    def _fixture(self, url) -> None:
        query = parse_qs(url.query)
        if url.path == "/_fixtures/slow":
            time.sleep(float(query.get("seconds", ["30"])[0]))
            return self._send(200, b"<html><body><article><p>Too late.</p></article></body></html>")
        if url.path == "/_fixtures/huge":
            mb = float(query.get("mb", ["20"])[0])
            para = b"<p>" + b"All work and no play makes Jack a dull boy. " * 20 + b"</p>\n"
            n = int(mb * 1024 * 1024 / len(para)) + 1
            return self._send(200, b"<html><body><article>" + para * n + b"</article></body></html>")
        if url.path.startswith("/_fixtures/status/"):
            code = int(url.path.rsplit("/", 1)[-1])
            return self._send(code, f"<html><body><h1>{code}</h1></body></html>".encode())
        return self._send(404, b"<html><body><h1>404</h1></body></html>")


class SampleSite:
    """The sample site in a background thread of the current process."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", root: Path = SITE_DIR):
        handler = partial(_Handler, directory=str(root))
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pid-file", default="")
    args = parser.parse_args()
    site = SampleSite(port=args.port, host=args.host)
    if args.pid_file:
        Path(args.pid_file).write_text(str(os.getpid()))
    print(f"serving {SITE_DIR} at {site.base_url}", flush=True)
    site.httpd.serve_forever()


if __name__ == "__main__":
    main()
