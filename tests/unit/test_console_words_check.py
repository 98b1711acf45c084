"""The word check applied to served HTML (:func:`tests.browser.words.english_words_in_html`)
reads what the browser check reads: the body's text without code, scripts, titles and the
language switch; and the labels people hear or see on hover, which the browser check skips."""

from __future__ import annotations

from tests.browser.words import english_words_in_html, readable_text

PAGE = """<!doctype html><html lang="en"><head><title>Head title</title>
<style>body { font-family: sans-serif }</style></head>
<body><p>核验结果 <code>token:bad-signature</code> 共 3 条</p>
<a href="?lang=en" hreflang="en">English page</a>
<svg><rect><title>tooltip words</title></rect></svg>
<input type="text" placeholder="type here"><img alt="a picture">
<nav aria-label="main menu">审计日志</nav>
<pre>raw leaf bytes</pre><p>签署于 2026-06-10 · CSV · JSON Lines · still English</p>
</body></html>"""


def test_the_readable_text_is_the_browsers_plus_labels() -> None:
    text = readable_text(PAGE)
    assert "核验结果" in text
    assert "审计日志" in text
    for hidden in ("Head title", "font-family", "bad-signature", "English page",
                   "tooltip words", "raw leaf bytes"):  # fmt: skip
        assert hidden not in text, hidden


def test_english_words_are_found_and_allowed_ones_left() -> None:
    assert english_words_in_html(PAGE) == ["type", "here", "picture", "main", "menu", "still"]
    assert english_words_in_html(PAGE, also=frozenset({"still"})) == [
        "type", "here", "picture", "main", "menu",
    ]  # fmt: skip
