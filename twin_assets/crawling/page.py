"""What fetching a page gives back, whether over plain HTTP or rendered by Chromium."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class FetchedPage:
    url: str  # what was asked for
    final_url: str  # after redirects
    status: int
    html: str
    via: Literal["http", "browser"]
    scroll_rounds: int = 0  # rounds of infinite scrolling run before `html` was taken
