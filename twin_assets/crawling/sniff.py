"""Is this payload text at all? A server's Content-Type is a claim, not a fact.

A PDF, a ZIP or an image served as `text/html` would otherwise be decoded with replacement
characters and stored as the author's "document": binary noise in the warehouse, then in
chunks, embeddings and training data. `binary_reason` looks at the bytes themselves, the way
browsers sniff: known magic numbers, NUL bytes (never in text outside UTF-16/32), and the
share of control and undecodable characters under the best of the likely decodings (the
declared charset, UTF-8, windows-1252), so that text in a legacy charset, or mislabelled
UTF-8, still passes.
"""

from __future__ import annotations

import codecs

# (offset, prefix, what it is): formats that are never a web page
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive (or an Office/EPUB/JAR file)"),
    (0, b"PK\x05\x06", "an empty ZIP archive"),
    (0, b"\x1f\x8b", "gzip-compressed data"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    *((0, b"BZh" + level, "bzip2-compressed data") for level in [bytes([d]) for d in b"123456789"]),
    (0, b"\xfd7zXZ\x00", "xz-compressed data"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!\x1a\x07", "a RAR archive"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (0, b"\x7fELF", "an executable (ELF)"),
    (0, b"\x00asm", "a WebAssembly module"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"OggS", "Ogg media"),
    *((0, b"ID3" + version, "an MP3 file") for version in (b"\x02", b"\x03", b"\x04")),
    (0, b"wOFF", "a web font"),
    (0, b"wOF2", "a web font"),
    (4, b"ftyp", "an MP4/QuickTime media file"),
    (8, b"WEBP", "a WebP image"),
    (8, b"AVI ", "an AVI video"),
    (8, b"WAVE", "a WAV audio file"),
)
_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SAMPLE = 64 * 1024
# Share of control/undecodable characters above which a payload is not text. Binary data
# scores 10-50% under every decoding; real text, in its own charset, close to 0%.
MAX_BAD_SHARE = 0.05
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")  # whitespace, and ESC (ISO-2022 charsets)


def _bad_share(sample: bytes, encoding: str) -> float:
    try:
        text = sample.decode(encoding, errors="replace")
    except LookupError:
        return 1.0
    if not text:
        return 0.0
    bad = sum(
        1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in _ALLOWED_CONTROLS) or ch == "\x7f"
    )
    return bad / len(text)


def binary_reason(body: bytes, encoding: str | None = None) -> str | None:
    """Why `body` is not text (a short phrase), or None when it reads as text.

    `encoding` is the charset the server declared, if any. Only the first 64 KB are looked
    at; a sample cut inside a multi-byte character costs at most one bad character.
    """
    sample = body[:_SAMPLE]
    if not sample.strip():
        return None
    for offset, magic, what in _MAGIC:
        if sample[offset : offset + len(magic)] == magic:
            return f"its bytes are {what}"
    if sample.startswith(_BOMS) or (encoding or "").lower().replace("-", "").startswith(("utf16", "utf32")):
        candidates = ["utf-32" if sample.startswith(_BOMS[:2]) else "utf-16"]
        if encoding:
            candidates.append(encoding)
    else:
        if b"\x00" in sample:
            return "it contains NUL bytes (binary data)"
        candidates = [c for c in (encoding, "utf-8", "cp1252") if c]
    share = min(_bad_share(sample, c) for c in candidates)
    if share > MAX_BAD_SHARE:
        return f"{share:.0%} of its characters are control or undecodable bytes (binary data)"
    return None
