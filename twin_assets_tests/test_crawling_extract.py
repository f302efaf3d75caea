"""Extraction: unstructured offline, clutter removal, code kept verbatim, markdown rendering."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from twin_assets.crawling.clutter import is_clutter_text
from twin_assets.crawling.extract import extract_article
from twin_assets.crawling.urls import normalize_url
from twin_assets.paths import PROJECT_ROOT
from twin_assets.text.markdown import blocks_to_markdown

CODE = "def f(x):\n\n\tif x:\n        return  x  *  2   \n    return None"
PAGE = f"""<html><head><title>T</title></head><body>
<nav><a href="/">Home</a> Sign in</nav>
<div id="cookie-banner">We use cookies to improve your experience.</div>
<article>
<h1>Real Title</h1>
<p>This is the author's first paragraph about distributed retrieval systems.</p>
<div class="share-bar"><button>Share</button><span>Listen</span></div>
<h2>Section two</h2>
<ul><li>first point</li><li>second point</li></ul>
<pre><code class="language-python">{CODE}</code></pre>
<blockquote><p>A quote worth keeping.</p></blockquote>
<table><tr><th>k</th><th>recall</th></tr><tr><td>5</td><td>0.81</td></tr></table>
<p>Line one<br>line two<br><br>New paragraph.</p>
<div class="subscription-widget">Subscribe to my newsletter</div>
<p>Share</p>
</article>
<footer>© 2026 Someone. All rights reserved.</footer>
</body></html>"""


def test_extract_keeps_structure_and_drops_clutter():
    ex = extract_article(PAGE)
    kinds = [b.kind for b in ex.blocks]
    texts = [b.text for b in ex.blocks]
    assert ex.title == "Real Title"
    assert kinds[0] == "title" and texts.count("Real Title") == 1
    assert "Section two" in texts and "first point" in texts
    code = next(b for b in ex.blocks if b.kind == "code")
    assert code.text == CODE and code.language == "python"  # byte-for-byte, tabs included
    assert any(b.kind == "quote" and b.text == "A quote worth keeping." for b in ex.blocks)
    assert any(b.kind == "table" and "| 5 | 0.81 |" in b.text for b in ex.blocks)
    assert "Line one\nline two" in texts and "New paragraph." in texts
    md = ex.markdown
    for clutter in ("cookies", "Subscribe", "Sign in", "Share", "Listen", "All rights reserved"):
        assert clutter not in md
    assert f"```python\n{CODE}\n```" in md
    assert "# Real Title" in md and "## Section two" in md and "- first point\n- second point" in md
    # document order is kept: code comes after the list and before the quote
    assert md.index("second point") < md.index("def f(x)") < md.index("A quote")


def test_malformed_html_does_not_raise():
    ex = extract_article(
        "<html><body><div><p>Unclosed <b>bold <i>text</div></td><table><tr><td>x"
        "<p>Real words that matter here.</html></body>"
    )
    assert "Real words that matter here." in ex.markdown


def test_clutter_phrases_and_url_normalisation():
    assert is_clutter_text("Member-only story") and is_clutter_text("12 claps")
    assert is_clutter_text("Sign up to discover human stories that deepen your understanding.")
    assert not is_clutter_text("Follow these three steps before you tune anything.")
    assert not is_clutter_text("I baked cookies for the team offsite.")
    assert normalize_url("HTTPS://Example.COM:443/a?utm_source=x&id=3#frag") == "https://example.com/a?id=3"
    md = blocks_to_markdown([])
    assert md == ""


def test_partition_works_with_the_network_unavailable():
    """unstructured must load the installed spaCy model and never try to download it."""
    script = textwrap.dedent(
        """
        import socket
        def no_network(*a, **k):
            raise OSError("network disabled in this test")
        socket.socket.connect = no_network
        socket.socket.connect_ex = no_network
        socket.create_connection = no_network
        socket.getaddrinfo = no_network
        from twin_assets.crawling.extract import extract_article
        ex = extract_article("<article><h1>T</h1><p>Sentences are classified by spaCy here. "
                             "This is narrative text written by a person.</p></article>")
        from unstructured.nlp.tokenize import _get_nlp, sent_tokenize
        assert len(sent_tokenize("One sentence. Another sentence.")) == 2
        print("OK", _get_nlp().meta["name"], [b.kind for b in ex.blocks])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK core_web_sm" in proc.stdout and "paragraph" in proc.stdout


def test_unstructured_sends_no_analytics_and_leaves_the_environment_alone():
    """Its import-time and per-partition analytics (and usage notice) are switched off by
    `configure_unstructured`, not by opt-out variables written into the process environment."""
    script = textwrap.dedent(
        """
        import os, subprocess, requests
        sent = []
        requests.get = lambda *a, **k: sent.append(("get", a))
        requests.Session.request = lambda self, *a, **k: sent.append(("session", a))
        real_run = subprocess.run
        def run(cmd, *a, **k):
            if cmd and cmd[0] == "nvidia-smi":
                sent.append(("nvidia-smi",))
            return real_run(cmd, *a, **k)
        subprocess.run = run
        before = dict(os.environ)
        from twin_assets.crawling.extract import extract_article
        ex = extract_article("<article><h1>T</h1><p>Narrative text written by a person, "
                             "long enough to be classified.</p></article>")
        assert [b.kind for b in ex.blocks] == ["title", "paragraph"], ex.blocks
        assert dict(os.environ) == before, "the environment was changed"
        assert not sent, sent
        print("OK")
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DO_NOT_TRACK", "SCARF_NO_ANALYTICS", "UNSTRUCTURED_DISABLE_NOTICE")
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout
    assert "Thank you for using Unstructured" not in proc.stdout + proc.stderr
