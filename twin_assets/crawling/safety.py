"""What the crawler refuses to touch, and how politely it touches the rest.

Registered links come from users, so every URL (and every redirect hop and sub-resource the
browser loads) is checked before a connection is made: only http(s), and never a private,
loopback, link-local, multicast, reserved or unspecified address (the classic SSRF targets:
cloud metadata at 169.254.169.254, databases on 10.x, services on localhost) unless the host
is on the operator's allow-list. Host names are resolved with getaddrinfo and *every* address
is checked, so a public name pointing at 127.0.0.1 is refused as well.

Checking a URL and then letting an HTTP library connect to it is not enough on its own: the
library resolves the name a second time, and a hostile DNS server (TTL 0) can answer a public
address to the check and 127.0.0.1 or 169.254.169.254 to the connection ("DNS rebinding", a
time-of-check/time-of-use race). So the decisive check happens at connect time:
`GuardedNetworkBackend` is the httpcore network backend of every crawler HTTP client; it
resolves the host once, applies the same rules and allow-list to every address, and connects
to one of those validated addresses itself. TLS still verifies the certificate against the
host name, because httpcore starts TLS on the returned socket with the original name as SNI.
`check_web_url` stays as the early check: it refuses with a clear error before anything is
sent, and it vets redirect targets before the next hop is even attempted.

Numeric hosts are read the way browsers and inet_aton read them (`parse_ipv4_host`): octal
`0251.0376.0251.0376`, hex `0xa9.0xfe.0xa9.0xfe`, a single integer `2852039166` and short forms
like `127.1` are the addresses they spell, and are refused like those, whatever the resolver
makes of them.

Allow-list entries may name a port (`127.0.0.1:8765`, `[::1]:8080`, `blog.internal:8080`,
`[fd00::/8]:443`), and a port is recommended: an entry without one admits the host on every
port, so allowing one local site would let its pages reach every other service on that host.

Every request through the guarded client also runs under a hard wall-clock deadline
(`HardDeadline`): the network streams the backend opens clamp each read, write, connect and
TLS handshake to the time left, so a server that trickles its headers or body one byte at a
time cannot keep a fetch alive past `page_timeout_s` (a per-read timeout alone is reset by
every byte).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from twin_assets.crawling.errors import (
    CrawlError,
    ExportError,
    NetworkError,
    RefusedAddress,
    UnsupportedScheme,
)
from twin_assets.crawling.settings import CrawlSettings

WEB_SCHEMES = frozenset({"http", "https"})
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")


def _is_refused_ip(ip: IpAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return _is_refused_ip(mapped)
        if ip.teredo is not None:
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def is_refused_ip(address: str) -> bool:
    """True for addresses a crawler must never connect to (IPv4, IPv6, IPv4-mapped IPv6)."""
    return _is_refused_ip(ipaddress.ip_address(address.split("%", 1)[0]))


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` (also for CIDRs) -> (host, port or None)."""
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            raise ValueError(f"allow-list entry {entry!r}: expected [address] or [address]:port")
        return host, int(rest[1:]) if rest else None
    if entry.count(":") == 1:  # one colon: host:port (an IPv6 address has at least two)
        host, port = entry.split(":")
        if not port.isdigit() or not host:
            raise ValueError(f"allow-list entry {entry!r}: expected host:port with a numeric port")
        return host, int(port)
    return entry, None


class AllowList:
    """Host names, IPs and CIDRs the operator explicitly permits (e.g. 127.0.0.1 in a demo),
    each optionally on one port only (`127.0.0.1:8765`, `[::1]:8080`, `intranet.local:8080`).

    An entry without a port permits every port of that host, as it always has; naming the port
    is recommended, so that the one local site allowed does not open the host's other services
    (a database, an admin console) to the pages crawled. A malformed entry is a ValueError.
    """

    def __init__(self, entries: list[str]):
        self.hosts: set[tuple[str, int | None]] = set()
        self.networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            host, port = _split_port(entry)
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"allow-list entry {raw!r}: port {port} is out of range")
            try:
                self.networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                self.hosts.add((host.rstrip("."), port))

    def permits_host(self, host: str, port: int | None = None) -> bool:
        """Whether `host` (by name) is allowed on `port`; entries with a port need it to match
        (an unknown port matches only port-less entries)."""
        name = host.lower().rstrip(".")
        return (name, None) in self.hosts or (port is not None and (name, port) in self.hosts)

    def permits_ip(self, address: str, port: int | None = None) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(
            ip.version == net.version and ip in net and (p is None or p == port) for net, p in self.networks
        )


def _ipv4_number(part: str) -> int | None:
    """One part of a numeric host, as inet_aton and the WHATWG URL parser read it:
    0x.. hex, 0.. octal, else decimal; None when it is no number."""
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
        if digits == "":
            return 0
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def parse_ipv4_host(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a URL host spells, however it is written (`127.1`, `0x7f.1`,
    `2130706433`, `0177.0.0.1`), or None for a host that is a name.

    Browsers (WHATWG URL) and inet_aton read these forms, so a host whose last label is a
    number is an address, not a name; one that is no valid address (`1.2.3.300`) is a
    malformed URL (CrawlError "malformed").
    """
    parts = host.rstrip(".").split(".") if host not in ("", ".") else []
    if not parts or _ipv4_number(parts[-1]) is None:
        return None  # a name (its last label is not a number)
    numbers = [_ipv4_number(p) if p else None for p in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise CrawlError(f"host {host!r} looks like an IPv4 address but is not a valid one", kind="malformed")
    *head, last = [n for n in numbers if n is not None]  # all of them, after the check above
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise CrawlError(f"host {host!r} is out of range for an IPv4 address", kind="malformed")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _check_numeric_host(host: str, port: int | None, allow: AllowList) -> None:
    """Refuse a numeric host spelled in another form (octal, hex, integer, short) when the
    address it spells is refused; a public one is malformed (we fetch canonical forms only)."""
    try:
        ipaddress.ip_address(host)
        return  # canonical dotted quad or IPv6: checked with the resolved addresses
    except ValueError:
        pass
    ip = parse_ipv4_host(host)
    if ip is None:
        return
    if is_refused_ip(str(ip)) and not allow.permits_ip(str(ip), port):
        raise RefusedAddress(f"host {host!r} is the address {ip}, which is not public; refused")
    raise CrawlError(f"host {host!r} is a non-standard spelling of {ip}; write it as {ip}", kind="malformed")


def _addrinfo(host: str, port: int) -> list[tuple]:
    """getaddrinfo for TCP, duplicates dropped, in the resolver's preference order."""
    seen: set[str | int] = set()  # the sockaddr's host: a str for the TCP/IP families
    infos = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP):
        if info[4][0] not in seen:
            seen.add(info[4][0])
            infos.append(info)
    return infos


@lru_cache(maxsize=1024)
def _resolve(host: str, port: int) -> tuple[str, ...]:
    # Cached: the early check runs for every sub-resource the browser loads. A stale or
    # rebound answer here is harmless, because the connection is checked again, uncached.
    return tuple(sorted(info[4][0] for info in _addrinfo(host, port)))


def resolve_host(host: str, port: int) -> tuple[str, ...]:
    """All addresses of a host. Raises NetworkError when it does not resolve."""
    try:
        return _resolve(host, port)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise NetworkError(f"cannot resolve host {host!r}: {exc}", retryable=False) from exc


def ensure_public_addresses(
    host: str, addresses: Iterable[str], allow: AllowList, port: int | None = None
) -> None:
    """Raise RefusedAddress when any address of `host` is one a crawler must not reach.

    One refused address refuses the host: a name that mixes public and private answers is
    either misconfigured or an attack, and which address a client ends up on is not ours to pick.
    """
    for address in addresses:
        if is_refused_ip(address) and not allow.permits_ip(address, port):
            raise RefusedAddress(f"{host} resolves to non-public address {address}; refused")


def check_web_url(url: str, settings: CrawlSettings, allow: AllowList | None = None) -> str:
    """Validate a URL before any request to it; returns the URL. Raises a typed CrawlError."""
    allow = allow or AllowList(settings.allow_hosts)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CrawlError(f"malformed URL {url!r}: {exc}", kind="malformed") from exc
    scheme = parts.scheme.lower()
    if scheme not in WEB_SCHEMES:
        raise UnsupportedScheme(f"scheme {scheme or '(none)'!r} is not allowed for {url!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise CrawlError(f"URL without a host: {url!r}", kind="malformed")
    if parts.username or parts.password:
        raise UnsupportedScheme(f"credentials in URLs are not allowed: {url!r}")
    port = port or (443 if scheme == "https" else 80)
    if allow.permits_host(host, port):
        return url
    _check_numeric_host(host, port, allow)
    ensure_public_addresses(host, resolve_host(host, port), allow, port)
    return url


class HardDeadline:
    """Wall-clock deadlines for whatever the guarded client does meanwhile.

    `within(seconds)` opens a deadline for the block it guards; deadlines nest (a rendered
    page's navigation and each request it relays), and the earliest open one counts. Kept per
    thread; Playwright's route handlers run in the thread that waits on the page, so a relayed
    request sees the navigation's deadline. Entries are removed by identity, not popped, so
    interleaved blocks (greenlets of that thread) cannot drop each other's deadline.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _open(self) -> dict[int, float]:
        if not hasattr(self._local, "open"):
            self._local.open = {}
        return self._local.open

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        token = object()
        self._open()[id(token)] = time.monotonic() + seconds
        try:
            yield
        finally:
            self._open().pop(id(token), None)

    def remaining(self) -> float | None:
        """Seconds left before the earliest open deadline (negative once passed), or None."""
        open_ = self._open()
        return min(open_.values()) - time.monotonic() if open_ else None

    def clamp(self, timeout: float | None, expired: type[Exception]) -> float | None:
        """`timeout` cut to the time left; raises `expired` once the deadline has passed."""
        left = self.remaining()
        if left is None:
            return timeout
        if left <= 0:
            raise expired("the page's time limit (page_timeout_s) has passed")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read, write and TLS handshake ends by the deadline.

    A socket timeout alone bounds one read: a server sending a byte just before it expires
    keeps the exchange going forever. Here each call gets at most the time left, and a call
    made after the deadline fails at once with httpcore's own timeout (httpx maps it to
    `httpx.TimeoutException`). Pooled keep-alive connections consult the deadline of the
    request that uses them, not of the one that opened them.
    """

    def __init__(self, stream: httpcore.NetworkStream, deadline: HardDeadline):
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        wrapped = self._stream.start_tls(
            ssl_context, server_hostname, self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        )
        return DeadlineStream(wrapped, self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class GuardedNetworkBackend(httpcore.SyncBackend):
    """httpcore backend that connects only to addresses that pass the SSRF rules.

    The host is resolved here, once and uncached, every address is checked like
    `check_web_url` does, and the socket is opened to a checked IP literal, so no second
    resolution can happen between check and connect. A refusal raises `RefusedAddress`,
    which httpx lets through unchanged (it only maps httpcore's own exceptions). Connecting
    and every later read and write are bounded by `deadline` (see `DeadlineStream`).
    """

    def __init__(self, allow: AllowList, deadline: HardDeadline | None = None):
        self.allow = allow
        self.deadline = deadline or HardDeadline()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        name = host.rstrip(".")
        self.deadline.clamp(timeout, httpcore.ConnectTimeout)  # fails at once when time is up
        permitted = self.allow.permits_host(name, port)
        if not permitted:
            _check_numeric_host(name, port, self.allow)
        try:
            infos = _addrinfo(name, port)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise httpcore.ConnectError(f"cannot resolve host {name!r}: {exc}") from exc
        addresses = [info[4][0] for info in infos]
        if not permitted:
            ensure_public_addresses(name, addresses, self.allow, port)
        last_error: Exception = httpcore.ConnectError(f"no address to connect to for {name!r}")
        for address in addresses:
            try:
                # An IP literal: the parent's create_connection resolves nothing any more.
                stream = super().connect_tcp(
                    address,
                    port,
                    self.deadline.clamp(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            return DeadlineStream(stream, self.deadline)
        raise last_error


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose connection pool dials through `GuardedNetworkBackend`.

    httpx 0.28 has no `network_backend` argument, so the pool is built here the way
    `HTTPTransport.__init__` builds its direct (proxy-less) pool; the parent's request
    handling and exception mapping are reused as they are. There is deliberately no proxy
    support: a proxy would connect on our behalf, out of reach of the address check.
    """

    def __init__(
        self,
        allow: AllowList,
        *,
        verify: bool = True,
        limits: httpx.Limits = httpx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0
        ),
        deadline: HardDeadline | None = None,
    ):
        # The parent __init__ is not called: it would build a second, unguarded pool.
        self.backend = GuardedNetworkBackend(allow, deadline)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )


def check_git_url(url: str, settings: CrawlSettings) -> str:
    """git sources: https anywhere public; local paths / file:// only when explicitly allowed.

    Returns what to hand to `git clone` (a local path becomes a file:// URL so that
    `--depth 1` is honoured).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return check_web_url(url, settings)
    if scheme in ("", "file"):
        if not settings.allow_local_sources:
            raise UnsupportedScheme(f"local git sources are disabled; refused {url!r}")
        path = Path(unquote(parts.path) if scheme == "file" else url).expanduser().resolve()
        if not path.exists():
            raise CrawlError(f"local repository {path} does not exist", kind="git_error")
        return path.as_uri()
    raise UnsupportedScheme(f"git scheme {scheme!r} is not allowed (only https, or local when allowed)")


def git_pinned_resolve(url: str, settings: CrawlSettings) -> list[str]:
    """`git -c http.curloptResolve=host:port:ip` arguments that pin an https remote to an
    address checked here, resolved once and uncached.

    git (through libcurl) would otherwise resolve the host itself after `check_git_url`, and a
    rebinding DNS answer could then point the clone at an internal service. With the pin,
    curl connects to the checked IP while TLS still verifies the certificate for the name.
    Hosts the operator allowed, and local sources, need no pin."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        return []
    host = (parts.hostname or "").rstrip(".")
    allow = AllowList(settings.allow_hosts)
    port = parts.port or 443
    if not host or allow.permits_host(host, port):
        return []
    _check_numeric_host(host, port, allow)
    try:
        addresses = [info[4][0] for info in _addrinfo(host, port)]
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise NetworkError(f"cannot resolve host {host!r}: {exc}", retryable=False) from exc
    if not addresses:
        raise NetworkError(f"no address for host {host!r}", retryable=False)
    ensure_public_addresses(host, addresses, allow, port)
    ip = addresses[0]
    return ["-c", f"http.curloptResolve={host}:{port}:{'[' + ip + ']' if ':' in ip else ip}"]


def check_export_path(url: str, settings: CrawlSettings) -> Path:
    """Data exports are local files, and reading a local file is opt-in like local git sources:
    otherwise a registered link could read any file the crawler can (an ssh key, a .env).

    With `export_roots` set, the path must lie inside one of them (the operator confined exports
    there, whether or not other local sources are allowed); without roots, exports need
    `allow_local_sources`. The path is resolved first (symlinks followed, `..` collapsed), so
    neither a `..` nor a symlink inside a root can escape it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("", "file"):
        raise UnsupportedScheme(f"exports must be local paths, not {parts.scheme!r} URLs")
    path = Path(unquote(parts.path) if parts.scheme == "file" else url).expanduser().resolve()
    if settings.export_roots:
        roots = [Path(r).expanduser().resolve() for r in settings.export_roots]
        if not any(path == r or r in path.parents for r in roots):
            raise RefusedAddress(f"export path {path} is outside the allowed export roots")
    elif not settings.allow_local_sources:
        raise UnsupportedScheme(
            f"local data exports are disabled (set TWIN_CRAWL_ALLOW_LOCAL or "
            f"TWIN_CRAWL_EXPORT_ROOTS); refused {url!r}"
        )
    if not path.exists():
        raise ExportError(f"export {path} does not exist")
    return path


class DomainRateLimiter:
    """At most one request per `min_interval` seconds per host, across threads."""

    def __init__(
        self,
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def wait(self, host: str) -> float:
        """Block until `host` may be hit again; returns the seconds waited."""
        host = host.lower()
        with self._lock:  # reserve a slot, then sleep outside the lock
            now = self._clock()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + self.min_interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)


def with_retries(
    fn: Callable[[], T],
    settings: CrawlSettings,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, CrawlError, float], None] | None = None,
) -> T:
    """Call `fn`, retrying retryable CrawlErrors (timeouts, 5xx, 429, network) with
    exponential backoff; 4xx, refused addresses and the like fail at once."""
    attempt = 0
    while True:
        try:
            return fn()
        except CrawlError as exc:
            if not exc.retryable or attempt >= settings.max_retries:
                raise
            delay = settings.backoff_base_s * (2**attempt)
            if on_retry:
                on_retry(attempt + 1, exc, delay)
            sleep(delay)
            attempt += 1
