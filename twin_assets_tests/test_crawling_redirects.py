"""Redirects: one loop (`redirects.follow_redirects`) for plain HTTP, the browser's relayed
requests and the page's own navigation; each hop checked, the chain cut at `max_redirects`."""

from __future__ import annotations

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twin_assets.crawling.errors import CrawlError, RefusedAddress
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.redirects import BrowserRequest, Redirect, follow_redirects
from twin_assets.crawling.safety import AllowList
from twin_assets.crawling.settings import CrawlSettings

LOG = logging.getLogger("test-redirects")
SETTINGS = CrawlSettings(
    allow_hosts=["127.0.0.1"],
    min_domain_interval_s=0,
    max_redirects=3,
    max_retries=0,
    page_timeout_s=10,
    browser_mode="always",
)

_PAGE = """<html><body><article><h1>Landing</h1><p id="out">waiting</p></article><script>
const out = document.getElementById("out");
Promise.all([
  fetch("/api/hops/2").then((r) => r.text()),
  fetch("/api/loop").then((r) => r.text(), () => "refused"),
  fetch("/api/post", {method: "POST", body: "x", headers: {"content-type": "text/plain"}})
    .then((r) => r.text()),
]).then((parts) => { out.textContent = parts.join(" | "); out.id = "done"; });
</script></body></html>"""


class _Server(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, body: str, ctype: str = "text/html") -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path
        for prefix in ("/hops/", "/api/hops/"):
            if path.startswith(prefix):
                n = int(path.rsplit("/", 1)[-1])
                if n > 0:
                    return self._redirect(302, f"{prefix}{n - 1}")
                if prefix == "/api/hops/":
                    return self._send("hops-ok", "text/plain")
                return self._send(_PAGE)
        if path in ("/loop", "/api/loop"):
            return self._redirect(302, path)
        if path == "/api/echo":
            return self._send(f"echo-{self.command}", "text/plain")
        return self._send("<html><body>404</body></html>")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/api/post":
            return self._redirect(303, "/api/echo")  # a browser re-sends it as a GET
        return self._send(f"echo-{self.command}", "text/plain")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_follow_redirects_checks_every_hop_and_stops_at_the_limit():
    allow = AllowList(["127.0.0.1"])
    seen: list[str] = []

    def hop(url: str) -> str | Redirect:
        seen.append(url)
        n = int(url.rsplit("/", 1)[-1])
        return "done" if n == 0 else Redirect(f"http://127.0.0.1/{n - 1}")

    assert follow_redirects("http://127.0.0.1/3", SETTINGS, allow, hop) == "done"
    assert seen[-1] == "http://127.0.0.1/0" and len(seen) == 4
    with pytest.raises(CrawlError, match=re.escape("more than 3 redirects from http://127.0.0.1/4")) as err:
        follow_redirects("http://127.0.0.1/4", SETTINGS, allow, hop)
    assert err.value.kind == "http_error"
    with pytest.raises(RefusedAddress):  # the target is checked before the next hop is made
        follow_redirects(
            "http://127.0.0.1/1",
            SETTINGS,
            allow,
            lambda url: Redirect("http://169.254.169.254/") if url.endswith("/1") else "x",
        )


def test_browser_request_is_redirected_as_a_browser_would():
    post = BrowserRequest(
        "POST",
        "https://a.example/form",
        {"content-type": "text/plain", "cookie": "c=1", "authorization": "t"},
        b"body",
    )
    after_303 = post.redirected(303, "https://a.example/done")
    assert (after_303.method, after_303.content, after_303.url) == ("GET", None, "https://a.example/done")
    assert "content-type" not in after_303.headers and after_303.headers["cookie"] == "c=1"
    kept = post.redirected(307, "https://a.example/again")
    assert (kept.method, kept.content, kept.headers) == ("POST", b"body", post.headers)
    elsewhere = post.redirected(307, "https://b.example/")
    assert "cookie" not in elsewhere.headers and "authorization" not in elsewhere.headers
    assert post.headers["cookie"] == "c=1"  # the original request is left as it was


def test_http_get_follows_up_to_the_limit(server):
    with PageFetcher(SETTINGS, LOG) as fetcher:
        page = fetcher.get(f"{server}/hops/3")
        assert page.final_url == f"{server}/hops/0" and "Landing" in page.html
        with pytest.raises(CrawlError, match="more than 3 redirects"):
            fetcher.get(f"{server}/hops/4")
        with pytest.raises(CrawlError, match="more than 3 redirects"):
            fetcher.get(f"{server}/loop")


def test_browser_navigation_and_relayed_requests_share_the_rules(server, browser):
    with PageFetcher(SETTINGS, LOG, browser=browser) as fetcher:
        page = fetcher.render(f"{server}/hops/3", wait_for="#done")
        assert page.final_url == f"{server}/hops/0" and page.via == "browser"
        # sub-resources: followed within the limit, a loop refused, a 303 re-sent as a GET
        assert "hops-ok | refused | echo-GET" in page.html
        with pytest.raises(CrawlError, match="more than 3 redirects"):
            fetcher.render(f"{server}/hops/4")
