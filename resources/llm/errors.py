"""What a backend raises when a call gives no completion. The generator retries the transient
ones with backoff and counts the permanent ones as skipped; neither reaches dataset code."""

from __future__ import annotations

from twin_assets.domain.generation import SkipReason


class TransientError(Exception):
    """Worth retrying (rate limit, server error, timeout, connection)."""

    def __init__(self, reason: SkipReason, message: str = "", retry_after: float | None = None):
        super().__init__(message or reason)
        self.reason: SkipReason = reason
        self.retry_after = retry_after


class PermanentError(Exception):
    """Not worth retrying (bad request, auth, not found): the call is skipped."""

    def __init__(self, reason: SkipReason, message: str = ""):
        super().__init__(message or reason)
        self.reason: SkipReason = reason
