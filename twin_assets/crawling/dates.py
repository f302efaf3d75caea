"""Publication dates: parsing the formats pages, exports and git write, and finding a page's
own date in its metadata (meta tags, JSON-LD, <time>). Naive times are taken as UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bs4 import BeautifulSoup

from twin_assets.crawling.soup import attr_str

_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%Y-%m-%d",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d %b %Y",
)


def parse_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    value = value.strip()
    for candidate in (value, value.replace("Z", "+00:00"), value.replace(" ", "T", 1)):
        try:
            dt = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    for fmt in _FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def find_published(soup: BeautifulSoup) -> datetime | None:
    for key, value in (
        ("property", "article:published_time"),
        ("name", "article:published_time"),
        ("itemprop", "datePublished"),
        ("name", "date"),
    ):
        node = soup.find("meta", attrs={key: value})
        if node and (dt := parse_datetime(attr_str(node, "content"))):
            return dt
    for script in soup.find_all("script", attrs={"type": "application/ld+json"}):
        try:
            data = json.loads(script.string or "")
        except ValueError:
            continue
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and (dt := parse_datetime(str(item.get("datePublished") or ""))):
                return dt
    for node in soup.select("time[datetime]"):
        if dt := parse_datetime(attr_str(node, "datetime")):
            return dt
    return None
