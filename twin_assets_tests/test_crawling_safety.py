"""SSRF guard, allow-list, schemes, rate limiting and retries (no browser needed)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twin_assets.crawling.errors import (
    CrawlError,
    FetchTimeout,
    HttpStatusError,
    RefusedAddress,
    TooLarge,
    UnsupportedScheme,
)
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.safety import (
    DomainRateLimiter,
    check_export_path,
    check_git_url,
    check_web_url,
    is_refused_ip,
    with_retries,
)
from twin_assets.crawling.settings import CrawlSettings

STRICT = CrawlSettings()
LOCAL = CrawlSettings(allow_hosts=["127.0.0.1"], min_domain_interval_s=0, max_retries=0, page_timeout_s=2)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/",
        "http://localhost/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0/",
        "http://192.168.1.1/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
    ],
)
def test_private_and_special_addresses_are_refused(url):
    with pytest.raises(RefusedAddress):
        check_web_url(url, STRICT)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/", "javascript:alert(1)", "data:text/html,hi"],
)
def test_non_http_schemes_are_refused(url):
    with pytest.raises(UnsupportedScheme):
        check_web_url(url, STRICT)


def test_public_addresses_pass_and_allow_list_permits_loopback():
    assert not is_refused_ip("8.8.8.8")
    assert not is_refused_ip("2606:4700:4700::1111")
    assert is_refused_ip("::ffff:169.254.169.254")
    assert check_web_url("http://93.184.215.14/", STRICT)
    assert check_web_url("http://127.0.0.1:9/x", LOCAL)
    cidr = CrawlSettings(allow_hosts=["10.0.0.0/8"])
    assert check_web_url("http://10.9.8.7/", cidr)
    with pytest.raises(RefusedAddress):
        check_web_url("http://192.168.0.1/", cidr)
    with pytest.raises(UnsupportedScheme):
        check_web_url("http://user:pw@127.0.0.1/", LOCAL)


def test_git_and_export_sources(tmp_path):
    with pytest.raises(UnsupportedScheme):
        check_git_url(str(tmp_path), STRICT)  # local repos need an explicit opt-in
    with pytest.raises(UnsupportedScheme):
        check_git_url("ssh://git@github.com/x/y.git", STRICT)
    with pytest.raises(UnsupportedScheme):
        check_git_url("ext::sh -c touch% /tmp/pwned", STRICT)
    with pytest.raises(RefusedAddress):
        check_git_url("https://127.0.0.1/x/y.git", STRICT)
    allowed = CrawlSettings(allow_local_sources=True)
    assert check_git_url(str(tmp_path), allowed) == tmp_path.resolve().as_uri()
    with pytest.raises(UnsupportedScheme):
        check_export_path("https://example.com/export.zip", STRICT)
    confined = CrawlSettings(export_roots=[str(tmp_path / "exports")])
    with pytest.raises(RefusedAddress):
        check_export_path("/etc/passwd", confined)


def test_exports_need_the_local_opt_in_or_an_export_root(tmp_path):
    """An export is a local file read: refused by default, like a local git path."""
    exports = tmp_path / "exports"
    (exports / "maya").mkdir(parents=True)
    export = exports / "maya" / "linkedin.zip"
    export.write_bytes(b"zip")
    secret = tmp_path / "secret.env"
    secret.write_text("TWIN_LLM_API_KEY=sk-123")
    for url in (str(export), export.as_uri(), str(secret)):
        with pytest.raises(UnsupportedScheme, match="TWIN_CRAWL_ALLOW_LOCAL"):
            check_export_path(url, STRICT)
    assert check_export_path(export.as_uri(), CrawlSettings(allow_local_sources=True)) == export
    confined = CrawlSettings(export_roots=[str(exports)])
    assert check_export_path(str(export), confined) == export  # inside a root: no opt-in needed
    (exports / "escape").symlink_to(secret)
    for url in (str(exports / "maya" / ".." / ".." / "secret.env"), str(exports / "escape")):
        with pytest.raises(RefusedAddress):
            check_export_path(url, confined)
        with pytest.raises(RefusedAddress):  # the roots confine even when local sources are on
            check_export_path(url, confined.model_copy(update={"allow_local_sources": True}))


def test_rate_limiter_spaces_requests_per_host_across_threads():
    clock = [0.0]
    slept: list[float] = []
    limiter = DomainRateLimiter(1.0, clock=lambda: clock[0], sleep=slept.append)
    threads = [threading.Thread(target=limiter.wait, args=("example.com",)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(slept) == [1.0, 2.0]  # first request free, then one per second
    assert limiter.wait("other.org") == 0.0  # other hosts are independent


def test_retries_back_off_on_transient_errors_but_not_on_4xx():
    settings = CrawlSettings(max_retries=3, backoff_base_s=0.5)
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise HttpStatusError("http://x/", 503)
        return "ok"

    assert with_retries(flaky, settings, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]

    calls.clear()

    def missing():
        calls.append(1)
        raise HttpStatusError("http://x/", 404)

    with pytest.raises(HttpStatusError):
        with_retries(missing, settings, sleep=sleeps.append)
    assert len(calls) == 1

    def always_timeout():
        calls.append(1)
        raise FetchTimeout("slow")

    calls.clear()
    with pytest.raises(FetchTimeout):
        with_retries(always_timeout, settings, sleep=lambda s: None)
    assert len(calls) == 4  # one try + max_retries


class _Redirector(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif self.path == "/to-local":
            self.send_response(302)
            self.send_header("Location", "/page")
            self.end_headers()
        elif self.path == "/chunked-huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()  # no Content-Length: the streamed byte count must catch it
            for _ in range(64):
                self.wfile.write(b"<p>" + b"x" * 16384 + b"</p>")
        else:
            body = b"<html><body><article><p>Hello from the page.</p></article></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture(scope="module")
def redirector():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_redirect_to_private_address_is_refused(redirector):
    with PageFetcher(LOCAL) as fetcher:
        with pytest.raises(RefusedAddress):
            fetcher.get(f"{redirector}/to-metadata")
        page = fetcher.get(f"{redirector}/to-local")
        assert page.final_url.endswith("/page") and "Hello" in page.html


def test_http_size_limit_counts_streamed_bytes(redirector, sample_site):
    small = LOCAL.model_copy(update={"max_page_bytes": 100_000})
    with PageFetcher(small) as fetcher:
        with pytest.raises(TooLarge):
            fetcher.get(f"{redirector}/chunked-huge")
        with pytest.raises(TooLarge):
            fetcher.get(f"{sample_site}/_fixtures/huge?mb=1")
        with pytest.raises(HttpStatusError) as err:
            fetcher.get(f"{sample_site}/_fixtures/status/404")
        assert err.value.status == 404


def test_http_timeout_and_retry_of_5xx(sample_site):
    settings = LOCAL.model_copy(update={"page_timeout_s": 1.0, "max_retries": 1, "backoff_base_s": 0.05})
    with PageFetcher(settings) as fetcher:
        with pytest.raises(FetchTimeout):
            fetcher.get(f"{sample_site}/_fixtures/slow?seconds=3")
        with pytest.raises(CrawlError) as err:
            fetcher.get(f"{sample_site}/_fixtures/status/503")
        assert err.value.kind == "http_error"
