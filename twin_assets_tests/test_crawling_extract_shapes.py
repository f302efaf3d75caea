"""Extraction on the markup real pages use: highlighted code, per-line code renderers, gutters,
titles against site banners, blog widgets and bylines, figures, tables, placeholders, and the
readability-lxml locator with its selector fallback."""

from __future__ import annotations

import pytest

from twin_assets.crawling.clutter import is_clutter_text
from twin_assets.crawling.extract import extract_article


def _code(html: str, **kw) -> list[str]:
    return [b.text for b in extract_article(html, **kw).blocks if b.kind == "code"]


def _page(body: str, head: str = "") -> str:
    return f"<html><head>{head}</head><body>{body}</body></html>"


PROSE = (
    "<p>This paragraph explains the idea in enough words to be the article's own prose, so "
    "that any extractor treats it as the content of the page and keeps it.</p>"
)


# -- code ------------------------------------------------------------------------------------
@pytest.mark.parametrize("locate_main", [False, True])
def test_comment_tokens_in_highlighted_code_are_kept(locate_main):
    html = _page(f"""<article><h1>Post</h1>{PROSE}
<pre class="language-python"><code class="language-python"><span class="token keyword">def</span> f<span class="token punctuation">():</span>
    <span class="token comment"># keep me</span>
    <span class="token keyword">return</span> <span class="token number">1</span>  <span class="token comment"># and me</span></code></pre>
<pre><code class="hljs"><span class="hljs-comment">-- a comment line</span>
<span class="hljs-keyword">SELECT</span> 1;</code></pre>{PROSE}
<div class="comments-area"><p>A reader's comment that is not the article.</p></div></article>""")
    code = _code(html, locate_main=locate_main)
    assert code == ["def f():\n    # keep me\n    return 1  # and me", "-- a comment line\nSELECT 1;"]
    assert "A reader's comment" not in extract_article(html, locate_main=locate_main).markdown


def test_one_element_per_line_renderers_keep_their_lines_and_drop_gutters():
    github = """<table class="highlight tab-size js-file-line-container"><tbody>
<tr><td id="L1" class="blob-num js-line-number" data-line-number="1"></td><td class="blob-code blob-code-inner js-file-line"><span class="pl-k">def</span> <span class="pl-en">main</span>():</td></tr>
<tr><td id="L2" class="blob-num js-line-number" data-line-number="2"></td><td class="blob-code blob-code-inner js-file-line">    <span class="pl-c"># comment</span></td></tr>
<tr><td id="L3" class="blob-num js-line-number" data-line-number="3"></td><td class="blob-code blob-code-inner js-file-line"><br></td></tr>
<tr><td id="L4" class="blob-num js-line-number" data-line-number="4"></td><td class="blob-code blob-code-inner js-file-line">    run()</td></tr>
</tbody></table>"""
    pygments = """<table class="highlighttable"><tr><td class="linenos"><div class="linenodiv"><pre>1
2</pre></div></td><td class="code"><div class="highlight"><pre><span></span><span class="n">x</span> <span class="o">=</span> <span class="mi">1</span>
<span class="c1"># done</span>
</pre></div></td></tr></table>"""
    docusaurus = """<div class="language-js codeBlockContainer"><pre class="prism-code language-js"><code>
<span class="token-line"><span class="token keyword">const</span> a = 1;<br></span><span class="token-line"><span class="token plain"> </span><br></span><span class="token-line"><span class="token comment">// two</span><br></span></code></pre></div>"""
    shiki = """<pre class="shiki"><code><span class="line"><span>if (x) {</span></span><span class="line"><span>  go();</span></span><span class="line"><span>}</span></span></code></pre>"""
    divs = """<div class="highlight"><div class="code-line"><span class="c1"># one</span></div><div class="code-line">  two</div></div>"""
    hljs_ln = """<pre><code class="hljs"><table class="hljs-ln"><tbody><tr><td class="hljs-ln-line hljs-ln-numbers" data-line-number="1"><div class="hljs-ln-n" data-line-number="1"></div></td><td class="hljs-ln-line hljs-ln-code" data-line-number="1"><span class="hljs-comment"># a</span></td></tr><tr><td class="hljs-ln-line hljs-ln-numbers" data-line-number="2"><div class="hljs-ln-n" data-line-number="2"></div></td><td class="hljs-ln-line hljs-ln-code" data-line-number="2">b = 2</td></tr></tbody></table></code></pre>"""
    prism_numbers = """<pre class="line-numbers language-sh"><code class="language-sh">ls -la
cd /tmp<span aria-hidden="true" class="line-numbers-rows"><span></span><span></span></span></code></pre>"""
    html = _page(
        "<article><h1>Post</h1>"
        + PROSE
        + github
        + PROSE
        + pygments
        + docusaurus
        + shiki
        + divs
        + hljs_ln
        + prism_numbers
        + PROSE
        + "</article>"
    )
    assert _code(html) == [
        "def main():\n    # comment\n\n    run()",
        "x = 1\n# done",
        "const a = 1;\n \n// two",
        "if (x) {\n  go();\n}",
        "# one\n  two",
        "# a\nb = 2",
        "ls -la\ncd /tmp",
    ]
    md = extract_article(html).markdown
    assert "```js\nconst a = 1;" in md and "```sh\nls -la" in md


def test_a_gutter_class_never_deletes_real_code():
    html = _page(
        f"<article>{PROSE}<pre><span class='line-number'>x = compute(1)</span>\n"
        "<span class='lineno'>2</span>y = 3</pre></article>"
    )
    assert _code(html) == ["x = compute(1)\ny = 3"]


def test_code_inside_a_quote_and_a_layout_table_is_kept_in_order():
    html = _page(f"""<article>{PROSE}<blockquote><p>Run this:</p><pre>make   all</pre></blockquote>
<table><tr><td><h3>Layout cell</h3><pre>  indented()</pre></td></tr></table><p>After the table, closing words.</p></article>""")
    ex = extract_article(html)
    md = ex.markdown
    assert "```\nmake   all\n```" in md and "```\n  indented()\n```" in md
    assert md.index("Run this") < md.index("make   all") < md.index("Layout cell") < md.index("indented()")
    assert md.index("indented()") < md.index("After the table")
    assert "TWINBLOCK" not in md


# -- titles ----------------------------------------------------------------------------------
def test_article_heading_beats_a_site_banner_h1():
    html = _page(
        f"""<header><h1>Hi, I'm Tom, I write about reliability</h1></header>
<article><header><h2 class="post-title">Retry budgets</h2></header>{PROSE}</article>""",
        head="<title>Retry budgets | Tom's notes</title>",
    )
    ex = extract_article(html)
    assert ex.title == "Retry budgets"
    assert "Hi, I'm Tom" not in ex.markdown


@pytest.mark.parametrize(
    "head, expected",
    [
        # og:title confirms the shorter form of <title>: the suffix goes
        (
            '<title>Chunking by heading - Lena\'s Lab</title><meta property="og:title" content="Chunking by heading">',
            "Chunking by heading",
        ),
        # JSON-LD headline agrees with <title>'s shorter form
        (
            '<title>Chunking by heading | Lena\'s Lab</title><script type="application/ld+json">'
            '{"@graph": [{"@type": "BlogPosting", "headline": "Chunking by heading"}]}</script>',
            "Chunking by heading",
        ),
        # nothing confirms a shorter form: the title is kept whole, colon and all
        ("<title>Python: a guide</title>", "Python: a guide"),
    ],
)
def test_title_suffix_is_dropped_only_when_another_source_confirms_it(head, expected):
    html = _page(f"<div class='banner'><h1>Lena's Lab</h1></div><div>{PROSE}</div>", head=head)
    assert extract_article(html).title == expected


def test_crawler_title_selector_is_trusted_when_nothing_agrees():
    html = _page(
        f"<h1>Site</h1><h1 class='story'>The story</h1>{PROSE}",
        head='<meta property="og:title" content="Something else">',
    )
    assert extract_article(html, title_selectors=["h1.story"]).title == "The story"


# -- clutter ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "blog comments powered by Disqus",
        "Please enable JavaScript to view the comments powered by Disqus.",
        "You might also like:",
        "Like this:",
        "Loading...",
        "Loading…",
        "Get the next post by email",
        "Share this:",
        "Related",
        "By Tom Becker · March 3, 2023 · 6 min read",
        "By Tom Becker",
        "Posted on May 10, 2022 by Lena Park",
        "March 3, 2023",
        "6 min read",
        "Published on 2023-11-20",
    ],
)
def test_widget_notices_and_bylines_are_clutter(text):
    assert is_clutter_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "By 2025, most of our traffic came from the mobile app, which changed how we cached.",
        "Posted answers on the forum were the best documentation we had for years.",
        "Loading the index takes four seconds on a cold start.",
        "I like this approach because it keeps the pager quiet.",
    ],
)
def test_prose_that_starts_like_a_byline_is_kept(text):
    assert not is_clutter_text(text)


def test_headings_that_read_like_bylines_are_kept():
    html = _page(f"<article><h1>Post</h1><h2>By the numbers</h2>{PROSE}</article>")
    assert "## By the numbers" in extract_article(html).markdown


def test_blog_widgets_comments_bio_and_related_posts_are_dropped():
    html = _page(f"""<article><h1>Post</h1><p class="post-meta">By Tom · March 3, 2023</p>{PROSE}
<div class="sharedaddy"><h3 class="sd-title">Share this:</h3><ul><li><a href="#">Twitter</a></li></ul></div>
<div class="author-bio"><p>Tom is an SRE who writes about reliability every other week.</p></div>
<div class="related-posts"><h3>You might also like:</h3><ul><li><a href="/x">Other</a> An excerpt of another post.</li></ul></div>
<div id="disqus_thread"></div><p class="dsq-brlink">blog comments powered by <a href="#">Disqus</a></p></article>""")
    md = extract_article(html).markdown
    for clutter in (
        "March 3",
        "Share this",
        "Tom is an SRE",
        "You might also like",
        "excerpt of another",
        "Disqus",
    ):
        assert clutter not in md, clutter
    assert "article's own prose" in md


def test_a_page_that_is_only_a_placeholder_has_no_content():
    ex = extract_article(_page('<div id="root"><p>Loading…</p></div>'))
    assert ex.word_count == 0


# -- figures and tables ----------------------------------------------------------------------
def test_figure_captions_and_figure_tables_stay_in_reading_order():
    html = _page(f"""<article><h1>Post</h1>{PROSE}
<figure><img src="a.png"><figcaption>Recall rose from 0.58 to 0.81 after re-chunking.</figcaption></figure>
<figure class="wp-block-table"><table><thead><tr><th>retriever</th><th>recall</th></tr></thead>
<tbody><tr><td>BM25</td><td>0.61</td></tr><tr><td>a | b</td><td>0.72</td></tr></tbody></table><figcaption>Recall on tickets.</figcaption></figure>
<p>The hybrid wins on recall, which is the trade I would take.</p>
<div class="jp-relatedposts"><p>An excerpt from an older post.</p></div></article>""")
    md = extract_article(html).markdown
    table = "| retriever | recall |\n| --- | --- |\n| BM25 | 0.61 |\n| a \\| b | 0.72 |"
    assert table in md
    assert (
        md.index("Recall rose")
        < md.index(table)
        < md.index("Recall on tickets")
        < md.index("The hybrid wins")
    )
    assert "older post" not in md


# -- the readability locator -------------------------------------------------------------------
NEWS = _page("""<div class="top"><a href="/">Home</a> <a href="/world">World</a> <a href="/tech">Tech</a></div>
<div class="layout"><div class="col-main"><h1>Ports are congested again</h1>
<p>Shipping lines reported longer waits at three major ports this week, and analysts expect the
delays to last into the spring, when volumes usually rise again.</p>
<p>The congestion follows a season of storms, labour disputes and a shortage of chassis, which are
the trailers used to move containers from the quay to warehouses inland.</p>
<p>Freight rates, which had fallen for most of the year, rose by a fifth in two weeks, according to
an index of spot prices published by a logistics firm.</p></div>
<div class="col-side"><div class="widget"><h3>Most read</h3><ul><li><a href="/a">A story</a></li>
<li><a href="/b">Another story</a></li><li><a href="/c">A third story</a></li></ul></div></div></div>
<div class="bottom">Contact us · Jobs · Advertise with us</div>""")


def test_readability_finds_the_content_of_a_page_without_article_markup():
    plain = extract_article(NEWS).markdown
    located = extract_article(NEWS, locate_main=True).markdown
    assert "Most read" in plain  # the body, as the selector path had to take it
    assert "Most read" not in located and "Advertise" not in located
    assert "shortage of chassis" in located and "spot prices" in located


def test_the_article_container_wins_when_readability_keeps_little_of_it(monkeypatch):
    """readability sometimes settles on one paragraph of a post made of short blocks; the
    `<article>` then holds far more unlinked text and is used instead."""
    from twin_assets.crawling import extract as extract_module
    from twin_assets.crawling.soup import soup_of

    items = "".join(
        f"<div>Step {i}: check the replica lag before you fail over, every time.</div>" for i in range(20)
    )
    page = _page(f"<article><h1>Failover checklist</h1><p>Why a checklist.</p>{items}</article>")
    monkeypatch.setattr(
        extract_module, "readability_content", lambda html: soup_of("<div><p>Why a checklist.</p></div>").div
    )
    md = extract_article(page, locate_main=True).markdown
    assert "Step 19: check the replica lag" in md
    # and when readability's choice holds most of the text, it is used
    monkeypatch.setattr(
        extract_module, "readability_content", lambda html: soup_of(f"<div>{items}</div>").div
    )
    md = extract_article(page, locate_main=True).markdown
    assert "Step 19" in md and "Why a checklist" not in md
