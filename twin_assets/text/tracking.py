"""Query parameters that say how a reader arrived at a page, not which page it is.

Two uses, two sets built from the same names:

- `TRACKING_PARAM_RE`: what the cleaner removes from links in the author's text (analytics
  and ad-click identifiers). Part of the cleaning rules, so it changes only with
  CLEANER_VERSION.
- `URL_IDENTITY_IGNORED_RE`: what the crawler ignores when deciding whether two URLs are the
  same page (`crawling.urls.normalize_url`). It adds referral markers that platforms append
  to their own links (`?source=...` on Medium, `?ref=...`, `?s=r` on Substack) and drops any
  `utm_` parameter, but not the ad-click identifiers the cleaner knows: changing it changes
  crawled links, and so document ids.
"""

from __future__ import annotations

import re

# Known to both sets.
_COMMON = ("fbclid", "gclid", "mc_cid", "mc_eid", "trk", "trkinfo", "trackingid", "lipi", "ref_src")
# Ad-click and e-mail campaign identifiers (removed from the author's links only).
_CAMPAIGN = (
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "yclid",
    "igshid",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "li_fat_id",
    "ref_url",
    "s_cid",
    "vero_id",
    "oly_enc_id",
    "oly_anon_id",
    "rb_clickid",
    r"wt\.mc_id",
    "sc_campaign",
    "sc_channel",
)
# Referral markers platforms add to links to their own pages (ignored for identity only).
_REFERRAL = ("source", "ref", "rcm", "sk", "s", "r")


def _whole_name(*patterns: str) -> re.Pattern[str]:
    return re.compile(rf"^(?:{'|'.join(patterns)})$", re.IGNORECASE)


TRACKING_PARAM_RE = _whole_name(r"utm_[a-z0-9_]*", *_COMMON, *_CAMPAIGN)
URL_IDENTITY_IGNORED_RE = _whole_name(r"utm_.*", *_COMMON, *_REFERRAL)
