"""What the browser tests check of a Chinese page: no English words in what people read.

A page's readable text is every text node and button label except the content of ``code``,
``pre``, ``style`` and ``script`` elements (identifiers, hashes, codes, the leaf bytes) and the
language switch. What remains may hold Latin letters only as the words of :data:`ALLOWED`
(acronyms and names of standards) or as tokens with a digit (ids, dates like ``2026-06-10``).

:func:`english_words` reads a page in the browser; :func:`english_words_in_html` applies the
same rules to HTML served in process (no browser), for sweeps over many pages.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: Latin words a Chinese page may show: standards and formats, the language switch, the
#: roles as the login names them, usernames of the tests.
ALLOWED = frozenset({
    "CSV", "JSON", "Lines", "RFC", "JWKS", "SHA", "English", "uscc", "auditor", "admin",
    "clerk", "SVG", "ID", "kid", "QR",
})  # fmt: skip

_READABLE = """() => {
  const skip = new Set(["CODE", "PRE", "STYLE", "SCRIPT", "TITLE"]);
  const out = [];
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) { out.push(node.textContent); return; }
    if (node.nodeType !== Node.ELEMENT_NODE || skip.has(node.tagName)) return;
    if (node.getAttribute("hreflang") || node.getAttribute("lang") === "en") return;
    for (const child of node.childNodes) walk(child);
  };
  walk(document.body);
  return out.join(" ");
}"""
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]*")


def english_words(page: Page, *, also: frozenset[str] = frozenset()) -> list[str]:
    """The Latin words of the page's readable text that are neither allowed nor ids."""
    text: str = page.evaluate(_READABLE)
    return latin_words(text, also=also)


class _ReadableText(HTMLParser):
    """The text of ``<body>`` that :data:`_READABLE` collects in the browser."""

    _SKIP = frozenset({"code", "pre", "style", "script", "title"})
    _VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                       "meta", "source", "track", "wbr"})  # fmt: skip
    #: Attributes people read too: what a screen reader says, a placeholder, a tooltip.
    _LABELS = ("aria-label", "placeholder", "title", "alt")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._open: list[bool] = []  # per open element: whether its content is skipped
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._in_body = True
        if not self._in_body:
            return
        named = dict(attrs)
        skipped = (
            tag in self._SKIP
            or bool(named.get("hreflang"))
            or named.get("lang") == "en"
            or bool(self._open and self._open[-1])
        )
        if not skipped:
            self.out.extend(named.get(name) or "" for name in self._LABELS)
        if tag not in self._VOID:
            self._open.append(skipped)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._in_body and not (self._open and self._open[-1]):
            self.out.append(data)


def readable_text(html: str) -> str:
    """A page's readable text, read from its HTML the way :func:`english_words` reads it, and
    the labels of :attr:`_ReadableText._LABELS` (which the browser check leaves out)."""
    parser = _ReadableText()
    parser.feed(html)
    parser.close()
    return " ".join(parser.out)


def english_words_in_html(html: str, *, also: frozenset[str] = frozenset()) -> list[str]:
    """:func:`english_words` of a page given as HTML."""
    return latin_words(readable_text(html), also=also)


def latin_words(text: str, *, also: frozenset[str] = frozenset()) -> list[str]:
    """The Latin words of ``text`` that are neither allowed nor ids."""
    found = []
    for token in _WORD.findall(text):
        if any(ch.isdigit() for ch in token):
            continue  # an id, a date, a number
        for word in re.split(r"[_.:@-]", token):
            if len(word) >= 2 and re.search(r"[A-Za-z]{2}", word) and word not in ALLOWED | also:
                found.append(token)
                break
    return found
