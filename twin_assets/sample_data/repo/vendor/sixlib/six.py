# Vendored copy of a tiny subset of "six" (Python 2/3 compatibility helpers).
# Vendored copy: do not edit here; update upstream and re-vendor.
# Copyright (c) 2010-2020 Benjamin Peterson. MIT license.
import sys

PY2 = sys.version_info[0] == 2
PY3 = sys.version_info[0] == 3

if PY3:
    string_types = (str,)
    integer_types = (int,)
    text_type = str
    binary_type = bytes
else:  # pragma: no cover
    string_types = (basestring,)  # noqa: F821
    integer_types = (int, long)  # noqa: F821
    text_type = unicode  # noqa: F821
    binary_type = str


def ensure_text(s, encoding="utf-8", errors="strict"):
    if isinstance(s, binary_type):
        return s.decode(encoding, errors)
    return s
