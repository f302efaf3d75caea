"""The local target: the `twin serve` process on this machine, started by PID if it is not
running, and asked over its real HTTP API.

WHY no code is shipped to the service: it already resolves every model from the registry. It
serves `<author>` as the version under the `production` alias and loads any registered
`<author>` pinned to a `version` on request, and it follows the author's published index by itself. So a
deployment here is: make sure the service runs, ask the NEW version by name (the smoke request,
while `<author>` still serves the old one), move `production`, then watch the service switch
`<author>` to the new version. A failed smoke request changes nothing the service serves.

The process is started through the CLI (`twin serve start`), a subprocess: this package sits
below the server module in the layers, and the service must outlive the Dagster run anyway.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from twin_assets.deployment.smoke import DeploymentFailed, SmokeAnswer, SmokeFailed, check_answer

UNAVAILABLE_RETRIES = 3


class LocalServiceSettings(BaseModel):
    """How to reach, and if needed start, the local inference service."""

    url: str = "http://127.0.0.1:8008"
    start_command: list[str] = Field(
        default_factory=lambda: [sys.executable, "-m", "twin_assets.cli", "serve", "start"],
        description="starts the service in the background (it records its PID); exits when started",
    )
    start_timeout_s: float = Field(default=180.0, gt=0, description="until /healthz answers")
    request_timeout_s: float = Field(default=300.0, gt=0, description="one smoke request (loads the adapter)")
    switch_timeout_s: float = Field(
        default=120.0, gt=0, description="until the service serves the new production version"
    )
    poll_interval_s: float = Field(default=1.0, gt=0)


class LocalService:
    """The `twin serve` process, over HTTP. `api_key` is sent as a bearer token and never
    appears in a log line or an error message of this class."""

    def __init__(
        self,
        settings: LocalServiceSettings,
        *,
        api_key: str | None = None,
        log: Callable[[str], None] = lambda _: None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self._key = api_key
        self._log = log
        self._sleep = sleep
        self._client = httpx.Client(base_url=settings.url.rstrip("/"), timeout=settings.request_timeout_s)

    def close(self) -> None:
        self._client.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    # -- process -------------------------------------------------------------------------------
    def alive(self) -> bool:
        try:
            return self._client.get("/healthz", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    def ready(self) -> bool:
        try:
            return self._client.get("/readyz", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    def ensure_running(self) -> bool:
        """Start the service unless it answers; True when this call started it."""
        if self.alive():
            return False
        cmd: Sequence[str] = self.settings.start_command
        self._log(
            f"inference service not answering at {self.settings.url}: starting it ({' '.join(cmd[-3:])})"
        )
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=self.settings.start_timeout_s
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise DeploymentFailed(
                f"could not start the inference service: {' | '.join(tail) or done.returncode}"
            )
        deadline = time.monotonic() + self.settings.start_timeout_s
        while not self.alive():
            if time.monotonic() > deadline:
                raise DeploymentFailed(
                    f"the inference service did not answer /healthz at {self.settings.url} "
                    f"within {self.settings.start_timeout_s:.0f} s of starting"
                )
            self._sleep(self.settings.poll_interval_s)
        return True

    # -- requests ------------------------------------------------------------------------------
    def answer(self, author: str, question: str, version: str | None = None) -> tuple[httpx.Response, float]:
        """POST /v1/twins/{author}/answer (`version`: pin that registered version instead of
        production); (response, latency in ms)."""
        body: dict[str, str] = {"question": question}
        if version:
            body["version"] = version
        started = time.perf_counter()
        response = self._client.post(
            f"/v1/twins/{quote(author, safe='')}/answer", json=body, headers=self._headers()
        )
        return response, (time.perf_counter() - started) * 1000

    def smoke(self, author: str, version: str, question: str, index_version: str = "") -> SmokeAnswer:
        """Ask `<author>` pinned to `version`. Retries a 503 (store or generator busy) a few
        times, and an answer from an older index until `switch_timeout_s` (the service polls
        the index alias); anything else fails at once."""
        deadline = time.monotonic() + self.settings.switch_timeout_s
        twin = f"{author}@{version}"
        unavailable = 0
        while True:
            try:
                response, ms = self.answer(author, question, version)
            except httpx.HTTPError as exc:
                raise SmokeFailed(f"smoke request to {twin} failed: {type(exc).__name__}: {exc}") from None
            # a version that cannot be loaded is also a 503 and never recovers: retry a few times only
            unavailable += response.status_code == 503
            retry = response.status_code == 503 and unavailable <= UNAVAILABLE_RETRIES
            if response.status_code == 200:
                try:
                    return check_answer(
                        response.content,
                        author=author,
                        version=version,
                        latency_ms=ms,
                        index_version=index_version,
                    )
                except SmokeFailed as exc:
                    retry = "index version" in str(exc)  # the service's index poll has not run yet
                    if not retry or time.monotonic() > deadline:
                        raise
            elif not retry:
                raise SmokeFailed(
                    f"smoke request to {twin} answered HTTP {response.status_code}: {_detail(response)}"
                )
            if time.monotonic() > deadline:
                raise SmokeFailed(
                    f"smoke request to {twin} still HTTP {response.status_code} after "
                    f"{self.settings.switch_timeout_s:.0f} s: {_detail(response)}"
                )
            self._sleep(self.settings.poll_interval_s)

    def wait_serving(self, author: str, version: str, question: str) -> SmokeAnswer:
        """Ask `<author>` (its production version) until the service reports `version`: the
        proof that the alias move was picked up (the service polls the registry)."""
        deadline = time.monotonic() + self.settings.switch_timeout_s
        last = ""
        while True:
            try:
                response, ms = self.answer(author, question)
                if response.status_code == 200:
                    return check_answer(response.content, author=author, version=version, latency_ms=ms)
                last = f"HTTP {response.status_code}: {_detail(response)}"
            except (httpx.HTTPError, SmokeFailed) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise DeploymentFailed(
                    f"the service did not switch {author} to {version} within "
                    f"{self.settings.switch_timeout_s:.0f} s ({last})"
                )
            self._sleep(self.settings.poll_interval_s)


def _detail(response: httpx.Response) -> str:
    """The error's own message, cut short (a service error never quotes a key)."""
    try:
        body = response.json()
        detail = body.get("detail") or body.get("error") or body if isinstance(body, dict) else body
    except ValueError:
        detail = response.text
    return str(detail)[:300]


class LocalTarget:
    """`Target` over the local service: versions are served side by side, so nothing to revert."""

    name = "local"

    def __init__(self, service: LocalService):
        self.service = service
        self.started = False

    @property
    def url(self) -> str:
        return self.service.settings.url

    def prepare(self, author: str, version: str) -> dict:
        self.started = self.service.ensure_running()
        return {"service_started": self.started}

    def smoke(self, author: str, version: str, question: str, index_version: str) -> SmokeAnswer:
        return self.service.smoke(author, version, question, index_version)

    def revert(self, author: str) -> None:
        """Nothing to undo: `<author>` kept serving the production version throughout."""

    def confirm(self, author: str, version: str, question: str) -> dict:
        served = self.service.wait_serving(author, version, question)
        return {"serving_latency_ms": served.latency_ms}
