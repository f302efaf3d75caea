"""Hostile pages: a crawl never hangs, never stores garbage, never reaches what it must not,
and never loses finished work.

Every server here listens on 127.0.0.1, runs in daemon threads, and bounds itself in time (a
trickling response stops after at most 60 s, and as soon as the client goes away).
"""

from __future__ import annotations

import gzip
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest

from twin_assets.crawling import crawl_author, safety
from twin_assets.crawling.collect import CollectionResult, collect_author, collection_metadata
from twin_assets.crawling.errors import CrawlError, FetchTimeout, NotHtml, RefusedAddress
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.safety import AllowList, GuardedNetworkBackend, check_web_url, parse_ipv4_host
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.sniff import binary_reason
from twin_assets.domain.documents import Author, AuthorLink, CrawlFailure, WriteStats

LOG = logging.getLogger("test_crawling_hostile")
TRICKLE_S = 0.5  # one header byte every half second, "forever" (at most 60 s)
# Without the hard deadline these would wait for the trickle to end (60 s) and then fail as a
# dropped connection; with it they fail as timeouts right after page_timeout_s.
GENEROUS_S = 20.0

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" + os.urandom(2000)
RANDOM = bytes(b or 1 for b in os.urandom(6000))  # no NUL byte: the character mix gives it away
ARTICLE = (
    "<html><head><title>Good</title></head><body><article><h1>A good post</h1>"
    + "<p>Retrieval quality depends on chunking more than on the embedding model.</p>" * 8
    + "</article></body></html>"
)


class _Site(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(
        self,
        body: bytes | str,
        ctype: str = "text/html; charset=utf-8",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _trickle(self, prefix: bytes) -> None:
        """Send `prefix`, then one byte every TRICKLE_S until the client leaves (max 60 s)."""
        self.close_connection = True
        try:
            self.wfile.write(prefix)
            self.wfile.flush()
            for _ in range(int(60 / TRICKLE_S)):
                time.sleep(TRICKLE_S)
                self.wfile.write(b"a")
                self.wfile.flush()
        except OSError:
            pass  # the crawler gave up: what we want

    def do_GET(self):
        other = self.server.other_port
        path = self.path.split("?")[0]
        if path == "/good":
            return self._send(ARTICLE)
        if path == "/trickle-headers":
            return self._trickle(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Slow: ")
        if path == "/trickle-body":
            return self._trickle(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n<html><body><p>"
            )
        if path == "/pdf":
            return self._send(PDF)
        if path == "/gzip":
            return self._send(gzip.compress(ARTICLE.encode()), "text/html")
        if path == "/random":
            return self._send(RANDOM, "text/html; charset=utf-8")
        if path == "/latin1":
            return self._send(
                ARTICLE.replace("good post", "café crème brûlée").encode("latin-1"),
                "text/html; charset=iso-8859-1",
            )
        if path == "/js-to-metadata":
            return self._send(
                "<html><body><article><p>Redirecting you now.</p></article><script>"
                "location.href = 'http://169.254.169.254/latest/meta-data/';"
                "</script></body></html>"
            )
        if path == "/refresh-to-v6":
            return self._send(
                f"<html><head><meta http-equiv='refresh' content='0; url=http://[::1]:"
                f"{other}/admin'></head><body><p>Moved.</p></body></html>"
            )
        if path == "/framed":
            return self._send(f"""<html><body><article><h1>Own words</h1><p id="own">{"My own text. " * 20}</p>
<iframe src="http://127.0.0.1:{other}/panel"></iframe>
<iframe src="http://localhost:{self.server.server_address[1]}/good"></iframe>
<p id="leak">nothing</p></article>
<script>fetch('http://127.0.0.1:{other}/admin').then(r => r.text())
  .then(t => {{ document.getElementById('leak').textContent = t; }}, () => null);</script>
</body></html>""")
        if path == "/to-other":
            return self._send(b"", status=302, headers={"Location": f"http://127.0.0.1:{other}/admin"})
        return self._send("<html><body>not here</body></html>", status=404)


class _Other(BaseHTTPRequestHandler):
    """Another local service on the same host: must never be reached by the crawl."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append(self.path)
        data = b"<html><body><p>INTERNAL ADMIN PANEL</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _start(handler, **attrs) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in attrs.items():
        setattr(server, name, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers():
    other = _start(_Other, seen=[])
    site = _start(_Site, other_port=other.server_address[1])
    yield f"http://127.0.0.1:{site.server_address[1]}", other
    for server in (site, other):
        server.shutdown()
        server.server_close()


def _settings(base: str, **update) -> CrawlSettings:
    """Only the site's own port is allowed: its neighbour on 127.0.0.1 is not."""
    values = dict(
        allow_hosts=[base.removeprefix("http://")],
        min_domain_interval_s=0,
        max_retries=0,
        page_timeout_s=2,
        browser_mode="never",
    )
    return CrawlSettings(**(values | update))


# -- 1. a hard deadline: trickled headers or bodies end as timeouts ----------------------------


@pytest.mark.parametrize("path", ["/trickle-headers", "/trickle-body"])
def test_http_fetch_of_a_trickling_server_times_out(servers, path):
    base, _ = servers
    started = time.monotonic()
    with PageFetcher(_settings(base), LOG) as fetcher, pytest.raises(FetchTimeout) as err:
        fetcher.get(base + path)
    assert time.monotonic() - started < GENEROUS_S
    assert err.value.kind == "timeout" and "2" in err.value.reason


def test_browser_render_of_a_trickling_server_times_out(servers, browser):
    base, _ = servers
    started = time.monotonic()
    with PageFetcher(_settings(base, browser_mode="always"), LOG, browser=browser) as fetcher:
        with pytest.raises(FetchTimeout):
            fetcher.render(base + "/trickle-headers")
        # the page after it is not held up by what the trickle left behind
        assert "A good post" in fetcher.render(base + "/good").html
    assert time.monotonic() - started < GENEROUS_S


def test_hard_deadline_clamps_every_read_and_fails_once_passed():
    deadline = safety.HardDeadline()
    assert deadline.clamp(5.0, httpcore.ReadTimeout) == 5.0  # no deadline open: unchanged
    with deadline.within(1.0):
        assert deadline.clamp(None, httpcore.ReadTimeout) <= 1.0
        assert deadline.clamp(30.0, httpcore.ReadTimeout) <= 1.0
        with deadline.within(100.0):  # the earliest open deadline counts
            assert deadline.clamp(30.0, httpcore.ReadTimeout) <= 1.0
    with deadline.within(0.0), pytest.raises(httpcore.ReadTimeout):
        deadline.clamp(30.0, httpcore.ReadTimeout)
    assert deadline.remaining() is None


def test_work_done_before_a_hang_or_a_crash_is_stored(servers, warehouse, monkeypatch):
    """Documents and failures are written as each link finishes: a link that hangs fails as a
    timeout, and a crash (here: the process interrupted) keeps what was already stored."""
    base, _ = servers
    store = warehouse.get_store()
    links = [f"{base}/good", f"{base}/nowhere", f"{base}/trickle-headers", f"{base}/pdf", f"{base}/latin1"]
    author = Author(id="hostile", full_name="H", links=[AuthorLink(url=u) for u in links])
    result = collect_author(author, _settings(base), store, log=LOG)
    assert sorted(d.link for d in store.get_documents("hostile")) == [f"{base}/good", f"{base}/latin1"]
    kinds = {f.link.removeprefix(base): f.kind for f in store.list_failures("hostile")}
    assert kinds == {"/nowhere": "http_error", "/trickle-headers": "timeout", "/pdf": "not_html"}
    assert result.stats.new == 2 and collection_metadata(result)["failures_by_kind"] == {
        "http_error": 1,
        "not_html": 1,
        "timeout": 1,
    }
    assert "café crème brûlée" in next(
        d.content for d in store.get_documents("hostile") if d.link.endswith("/latin1")
    )

    # A crash in the middle of the next crawl: what came before it is stored.
    real_get = PageFetcher.get

    def crash_on_pdf(self, url, **kwargs):
        if url.endswith("/pdf"):
            raise KeyboardInterrupt("killed")
        return real_get(self, url, **kwargs)

    monkeypatch.setattr(PageFetcher, "get", crash_on_pdf)
    crashed = Author(
        id="crashed",
        full_name="C",
        links=[
            AuthorLink(url=u) for u in (f"{base}/good", f"{base}/nowhere", f"{base}/pdf", f"{base}/latin1")
        ],
    )
    with pytest.raises(KeyboardInterrupt):
        collect_author(crashed, _settings(base), store, log=LOG)
    assert [d.link for d in store.get_documents("crashed")] == [f"{base}/good"]
    assert [(f.link, f.kind) for f in store.list_failures("crashed")] == [(f"{base}/nowhere", "http_error")]


# -- 2. binary payloads served as pages ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/pdf", "/gzip", "/random"])
def test_binary_served_as_html_is_refused_on_both_paths(servers, browser, path):
    base, _ = servers
    with PageFetcher(_settings(base, page_timeout_s=10), LOG, browser=browser) as fetcher:
        with pytest.raises(NotHtml) as err:
            fetcher.get(base + path)
        assert err.value.kind == "not_html" and "text/html" in err.value.reason
        with pytest.raises(NotHtml):
            fetcher.render(base + path)


def test_sniffing_tells_binary_from_text_in_any_charset():
    for binary in (
        PDF,
        gzip.compress(b"hello" * 100),
        b"PK\x03\x04" + os.urandom(100),
        b"\x89PNG\r\n\x1a\n" + os.urandom(100),
        RANDOM,
        os.urandom(4000),
    ):
        assert binary_reason(binary), binary[:10]
    text = "Zażółć gęślą jaźń, привет, 日本語のテキスト. " * 40
    assert binary_reason(text.encode()) is None
    assert binary_reason(text.encode(), "iso-8859-1") is None  # mislabelled UTF-8 still passes
    assert binary_reason("Zażółć gęślą jaźń ".encode("iso-8859-2") * 40, "iso-8859-2") is None
    assert binary_reason("日本語のテキストです。".encode("shift_jis") * 40) is None
    assert binary_reason("<html>UTF-16 text</html>".encode("utf-16")) is None
    assert binary_reason(b"") is None and binary_reason(b"  \n") is None


# -- 3. script and meta-refresh redirects to refused addresses ---------------------------------


@pytest.mark.parametrize("path", ["/js-to-metadata", "/refresh-to-v6"])
def test_a_blocked_navigation_is_a_refusal_never_content(servers, browser, path):
    base, other = servers
    settings = _settings(base, browser_mode="always", page_timeout_s=5)
    author = Author(
        id="maya", full_name="M", links=[AuthorLink(url=f"{base}/good"), AuthorLink(url=base + path)]
    )
    report = crawl_author(author, settings, LOG, browser=browser)
    assert [d.link for d in report.documents] == [f"{base}/good"]
    assert [(f.link, f.kind) for f in report.failures] == [(base + path, "refused_address")]
    assert not any("ERR_BLOCKED" in d.content or "blocked" in d.content.lower() for d in report.documents)
    assert other.seen == []


# -- 4. an allow-list entry with a port admits that port only ----------------------------------


def test_allow_list_entries_with_ports():
    allow = AllowList(
        ["127.0.0.1:8765", "[::1]:8080", "blog.internal:8080", "10.0.0.0/8", "[fd00::/8]:443", "intranet"]
    )
    assert allow.permits_ip("127.0.0.1", 8765) and not allow.permits_ip("127.0.0.1", 5432)
    assert not allow.permits_ip("127.0.0.1")  # a port-scoped entry needs the port
    assert allow.permits_ip("::1", 8080) and not allow.permits_ip("::1", 80)
    assert allow.permits_ip("10.2.3.4", 1) and allow.permits_ip("10.2.3.4")  # no port: any port
    assert allow.permits_ip("fd00::5", 443) and not allow.permits_ip("fd00::5", 80)
    assert allow.permits_host("blog.internal", 8080) and not allow.permits_host("blog.internal", 80)
    assert allow.permits_host("intranet", 1)
    with pytest.raises(ValueError):
        AllowList(["127.0.0.1:http"])
    with pytest.raises(ValueError):
        AllowList(["[::1]x"])
    local = CrawlSettings(allow_hosts=["127.0.0.1:8765", "[::1]:8080"])
    assert check_web_url("http://127.0.0.1:8765/x", local)
    assert check_web_url("http://[::1]:8080/x", local)
    for url in (
        "http://127.0.0.1:5432/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "https://127.0.0.1/",
    ):  # https: port 443, not the allowed one
        with pytest.raises(RefusedAddress):
            check_web_url(url, local)


def test_a_port_scoped_allow_list_keeps_the_neighbours_out(servers, browser):
    base, other = servers
    other.seen.clear()
    port = int(base.rsplit(":", 1)[1])
    GuardedNetworkBackend(AllowList([f"127.0.0.1:{port}"])).connect_tcp("127.0.0.1", port).close()
    with pytest.raises(RefusedAddress):  # at connect time too, not only in the early check
        GuardedNetworkBackend(AllowList([f"127.0.0.1:{port}"])).connect_tcp(
            "127.0.0.1", other.server_address[1]
        )
    settings = _settings(base, browser_mode="always", page_timeout_s=5)
    with PageFetcher(settings, LOG, browser=browser) as fetcher:
        with pytest.raises(RefusedAddress):
            fetcher.get(f"{base}/to-other")
        with pytest.raises(RefusedAddress):
            fetcher.render(f"{base}/to-other")
        page = fetcher.render(f"{base}/framed")
    assert "My own text." in page.html and "INTERNAL ADMIN PANEL" not in page.html
    assert other.seen == []


def test_a_cross_origin_frame_never_contributes_text(servers, browser):
    """Even with the old port-less entry (every port of 127.0.0.1 allowed), a frame of another
    origin is not loaded and the main frame's DOM is all that is extracted."""
    base, other = servers
    other.seen.clear()
    settings = _settings(
        base, allow_hosts=["127.0.0.1", "localhost"], browser_mode="always", page_timeout_s=5
    )
    author = Author(id="maya", full_name="M", links=[AuthorLink(url=f"{base}/framed")])
    report = crawl_author(author, settings, LOG, browser=browser)
    (document,) = report.documents
    assert "My own text." in document.content
    assert "INTERNAL ADMIN PANEL" not in document.content and "A good post" not in document.content
    assert "/panel" not in other.seen  # the frame was never loaded (the page's fetch() may be:
    # a port-less entry allows every port, which is why a port is recommended; its answer,
    # which that service did not allow another origin to read, is not handed to the page)
    assert "nothing" in document.content


# -- 5. failures in the run's metadata stay readable and bounded -------------------------------


def test_failure_metadata_is_a_bounded_summary():
    failures = [
        CrawlFailure(
            author_id="a",
            link=f"https://a.example/post/{i}",
            kind="http_error" if i % 3 else "timeout",
            reason=f"HTTP 503 for https://a.example/post/{i} " + "x" * 1500,
        )
        for i in range(2000)
    ]
    meta = collection_metadata(CollectionResult(author_id="a", stats=WriteStats(), failures=failures))
    assert meta["failed"] == 2000
    assert meta["failures_by_kind"] == {"http_error": 1333, "timeout": 667}
    table = meta["failures"]
    assert len(table) < 12_000 and table.count("| https://a.example/post/") == 20
    assert "1980 more" in table and "x" * 301 not in table
    assert len(str(meta)) < 16_000


# -- 6. other spellings of an address are that address ------------------------------------------


@pytest.mark.parametrize(
    "host, address",
    [
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
    ],
)
def test_other_spellings_of_refused_addresses_are_refused(host, address, monkeypatch):
    assert str(parse_ipv4_host(host)) == address

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # whatever the resolver thinks of them
    safety._resolve.cache_clear()
    with pytest.raises(RefusedAddress, match=address):
        check_web_url(f"http://{host}/latest/meta-data/", CrawlSettings())
    with pytest.raises(RefusedAddress):
        GuardedNetworkBackend(AllowList([])).connect_tcp(host, 80)
    with PageFetcher(CrawlSettings(max_retries=0), LOG) as fetcher, pytest.raises(RefusedAddress):
        fetcher.get(f"http://{host}/")


def test_numeric_hosts_that_are_no_address_or_a_public_one():
    assert parse_ipv4_host("example.com") is None and parse_ipv4_host("1password.com") is None
    assert str(parse_ipv4_host("8.8.8.8")) == "8.8.8.8"
    for bad in ("1.2.3.300", "1.2.3.4.5", "08.1.1.1", "x.1"):
        with pytest.raises(CrawlError) as err:
            check_web_url(f"http://{bad}/", CrawlSettings())
        assert err.value.kind == "malformed"
    with pytest.raises(CrawlError) as err:  # 169.31.0.1: public, but only fetched as written so
        check_web_url("http://0251.037.0.1/", CrawlSettings())
    assert err.value.kind == "malformed" and "169.31.0.1" in err.value.reason
