"""DNS rebinding: the address check must hold for the address actually connected to.

A hostile DNS server answers a public address to the crawler's URL check and 127.0.0.1 to the
connection that follows. The resolver is faked here (only for the `.example` names below;
everything else resolves for real) so that the first answer for `rebind.example` is public
and every later one is 127.0.0.2, where a "victim" server listens and records what reaches it
(the operator's allowed site is on 127.0.0.1; the allow-list names that address exactly).
Both fetch paths must refuse with RefusedAddress and the victim must see nothing; a host the
operator allowed still works end to end, redirects, sub-resources and cookies included.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest

from twin_assets.crawling import safety
from twin_assets.crawling.errors import RefusedAddress
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.safety import AllowList, GuardedNetworkBackend
from twin_assets.crawling.settings import CrawlSettings

PUBLIC = "93.184.216.34"
REBIND = "rebind.example"  # first answer public, then loopback: the attack
SITE = "site.example"  # always loopback, allowed by name: the operator's own site
VICTIM_IP = "127.0.0.2"  # loopback, but not on the allow-list
SETTINGS = CrawlSettings(
    allow_hosts=[SITE, "127.0.0.1"],
    min_domain_interval_s=0,
    max_retries=0,
    page_timeout_s=5,
    browser_mode="always",
)
LOG = logging.getLogger("test_crawling_rebinding")


class _Recorder(BaseHTTPRequestHandler):
    """Serves a few pages and records every request: (path, headers, client port)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append(
            (self.path, {k.lower(): v for k, v in self.headers.items()}, self.client_address[1])
        )
        status, headers, body = self.server.pages.get(
            self.path.split("?")[0], (404, {"Content-Type": "text/plain"}, b"not found")
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(pages, ip: str = "127.0.0.1") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((ip, 0), _Recorder)
    server.daemon_threads = True
    server.seen = []
    server.pages = pages
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


HTML = {"Content-Type": "text/html; charset=utf-8"}


@pytest.fixture(scope="module")
def victim():
    """An internal service on loopback that a rebinding attack wants to reach."""
    server = _serve(
        {
            "/secret": (
                200,
                {"Content-Type": "text/html"},
                b"<html><body><p>internal secret</p></body></html>",
            )
        },
        VICTIM_IP,
    )
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site(victim):
    """The operator's allowed site; some of its pages point at the rebinding host."""
    server = _serve({})
    port, vport = server.server_address[1], victim.server_address[1]
    evil = f"http://{REBIND}:{vport}"
    server.pages.update(
        {
            "/page": (200, HTML, b"<html><body><article><p>Hello from the site.</p></article></body></html>"),
            "/to-rebind": (302, {"Location": f"{evil}/secret"}, b""),
            "/start": (302, {"Location": "/landing", "Set-Cookie": "hop=1; Path=/"}, b""),
            "/landing": (
                200,
                HTML,
                f"""<html><body><article><p>Landed safely.</p></article>
<script src="/app.js"></script>
<script src="{evil}/secret.js"></script>
<iframe src="{evil}/secret"></iframe>
</body></html>""".encode(),
            ),
            "/app.js": (
                200,
                {"Content-Type": "text/javascript"},
                f"""
const xhr = fetch('/api').then(r => r.text()).then(t => {{
  const p = document.createElement('p'); p.id = 'api'; p.textContent = t;
  document.querySelector('article').appendChild(p);
}});
const ws = new Promise(done => {{
  const sock = new WebSocket('ws://{VICTIM_IP}:{vport}/socket');
  sock.onclose = ev => {{
    const p = document.createElement('p'); p.id = 'ws'; p.textContent = `ws closed ${{ev.code}}`;
    document.body.appendChild(p); done();
  }};
}});
const leak = fetch('{evil}/secret').catch(() => null);
Promise.all([xhr, ws, leak]).then(() => {{
  const d = document.createElement('p'); d.id = 'done'; document.body.appendChild(d);
}});
""".encode(),
            ),
            "/api": (302, {"Location": "/api-final"}, b""),
            "/api-final": (200, {"Content-Type": "text/plain"}, b"api answered"),
        }
    )
    server.base = f"http://{SITE}:{port}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def resolver(monkeypatch):
    """Fake DNS for the .example names; counts the lookups of each name."""
    real = socket.getaddrinfo
    calls: dict[str, int] = {}

    def answer(host: str) -> str | None:
        if host == SITE:
            return "127.0.0.1"
        if host == REBIND:
            return PUBLIC if calls[host] == 1 else VICTIM_IP
        return None

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".example"):
            return real(host, port, family, type, proto, flags)
        calls[name] = calls.get(name, 0) + 1
        address = answer(name)
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]

    safety._resolve.cache_clear()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield calls
    safety._resolve.cache_clear()


@pytest.fixture
def clean(victim, site):
    victim.seen.clear()
    site.seen.clear()


def test_backend_checks_the_address_it_connects_to(site, victim, resolver, clean):
    port = victim.server_address[1]
    safety.check_web_url(f"http://{REBIND}:{port}/", SETTINGS)  # first answer: public, passes
    backend = GuardedNetworkBackend(AllowList(SETTINGS.allow_hosts))
    with pytest.raises(RefusedAddress, match=VICTIM_IP):
        backend.connect_tcp(REBIND, port, timeout=2)
    assert resolver[REBIND] == 2  # refused on the connect-time answer, not the checked one
    # The operator's allow-list applies at connect time as well, by name or by address.
    GuardedNetworkBackend(AllowList([SITE])).connect_tcp(SITE, site.server_address[1], timeout=2).close()
    GuardedNetworkBackend(AllowList(["127.0.0.0/8"])).connect_tcp(REBIND, port, timeout=2).close()
    with pytest.raises(RefusedAddress):  # the site's exact address does not cover its neighbour
        GuardedNetworkBackend(AllowList(SETTINGS.allow_hosts)).connect_tcp(VICTIM_IP, port, timeout=2)
    with pytest.raises(httpcore.ConnectError, match="cannot resolve"):
        backend.connect_tcp("nowhere.example", port, timeout=2)
    assert victim.seen == [] and site.seen == []  # allowed sockets closed without a request


def test_http_path_refuses_a_rebound_host(victim, resolver, clean):
    url = f"http://{REBIND}:{victim.server_address[1]}/secret"
    with PageFetcher(SETTINGS, LOG) as fetcher, pytest.raises(RefusedAddress):
        fetcher.get(url)
    assert resolver[REBIND] == 2
    assert victim.seen == []


def test_http_path_refuses_a_redirect_to_a_rebound_host(site, victim, resolver, clean):
    with PageFetcher(SETTINGS, LOG) as fetcher:
        with pytest.raises(RefusedAddress):
            fetcher.get(f"{site.base}/to-rebind")
        page = fetcher.get(f"{site.base}/page")  # the allowed site itself still works
    assert page.status == 200 and "Hello from the site." in page.html
    assert [path for path, _, _ in site.seen] == ["/to-rebind", "/page"]
    assert site.seen[-1][1]["host"] == f"{SITE}:{site.server_address[1]}"
    assert victim.seen == []


def test_browser_path_refuses_a_rebound_host(browser, site, victim, resolver, clean):
    with PageFetcher(SETTINGS, LOG, browser=browser) as fetcher:
        with pytest.raises(RefusedAddress):
            fetcher.render(f"http://{REBIND}:{victim.server_address[1]}/secret")
        with pytest.raises(RefusedAddress):  # a redirect hop is fetched by the guarded client too
            fetcher.render(f"{site.base}/to-rebind")
    # Chromium cannot see the fake resolver: these lookups prove the guarded client did the
    # fetching, and the refusals came from its connect-time answer (the first one was public).
    assert resolver[REBIND] >= 3
    assert victim.seen == []


@pytest.mark.parametrize("host", [SITE, "127.0.0.1"])
def test_browser_renders_an_allowed_site_and_nothing_escapes_the_guard(
    host, browser, site, victim, resolver, clean, monkeypatch
):
    """Redirects (page and XHR), a cookie set on a redirect, scripts and fetch() all work;
    the rebound sub-resources, the iframe and the WebSocket never reach the victim, and every
    request the site saw came over a socket the guarded backend opened."""
    opened: set[int] = set()
    connect = GuardedNetworkBackend.connect_tcp

    def spy(self, *args, **kwargs):
        stream = connect(self, *args, **kwargs)
        opened.add(stream.get_extra_info("client_addr")[1])
        return stream

    monkeypatch.setattr(GuardedNetworkBackend, "connect_tcp", spy)
    with PageFetcher(SETTINGS, LOG, browser=browser) as fetcher:
        base = f"http://{host}:{site.server_address[1]}"
        page = fetcher.render(f"{base}/start", wait_for="#done")
    assert page.final_url == f"{base}/landing"
    assert "Landed safely." in page.html and "api answered" in page.html
    assert "ws closed 1008" in page.html  # closed by the crawler, never opened by Chromium
    paths = [path for path, _, _ in site.seen]
    assert paths[:3] == ["/start", "/landing", "/app.js"] and "/api-final" in paths
    landing_headers = site.seen[1][1]
    assert landing_headers.get("cookie") == "hop=1"  # the redirect's cookie was kept
    assert all(port in opened for _, _, port in site.seen)  # Chromium connected to nothing itself
    assert victim.seen == []


# -- git: libcurl resolves on its own, so the clone is pinned to the checked address ---------


def test_git_clone_is_pinned_to_the_checked_address(monkeypatch):
    real = socket.getaddrinfo
    answers = {"git.example": PUBLIC, "git6.example": "2606:2800:220:1::1"}

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return real(host, port, family, type, proto, flags)
        fam = socket.AF_INET6 if ":" in answers[name] else socket.AF_INET
        return [(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answers[name], int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert safety.git_pinned_resolve("https://git.example/maya/repo.git", SETTINGS) == [
        "-c",
        f"http.curloptResolve=git.example:443:{PUBLIC}",
    ]
    assert safety.git_pinned_resolve("https://git6.example:8443/r.git", SETTINGS) == [
        "-c",
        "http.curloptResolve=git6.example:8443:[2606:2800:220:1::1]",
    ]
    assert safety.git_pinned_resolve(f"https://{SITE}/r.git", SETTINGS) == []  # operator-allowed
    assert safety.git_pinned_resolve("file:///srv/repo", SETTINGS) == []


def test_git_clone_of_a_rebinding_host_is_refused_before_git_runs(resolver, monkeypatch):
    from twin_assets.crawling import github
    from twin_assets.crawling.base import CrawlContext, CrawlTarget
    from twin_assets.domain.documents import Author, AuthorLink, SourceKind

    ran: list[list[str]] = []
    monkeypatch.setattr(github.subprocess, "run", lambda cmd, **kw: ran.append(cmd))
    link = AuthorLink(url=f"https://{REBIND}/maya/repo", kind=SourceKind.GIT)
    with PageFetcher(SETTINGS, LOG) as fetcher:
        ctx = CrawlContext(
            author=Author(id="maya", full_name="Maya"), settings=SETTINGS, fetcher=fetcher, log=LOG
        )
        # the URL check sees the public answer; the pin's own lookup sees the rebound one
        with pytest.raises(RefusedAddress, match=VICTIM_IP):
            github.GithubCrawler().crawl(CrawlTarget(url=link.url, link=link), ctx)
    assert ran == [] and resolver[REBIND] == 2
