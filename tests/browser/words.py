"""What the browser tests check of a Chinese page: no English words in what people read.

A page's readable text is every text node and button label except the content of ``code``,
``pre``, ``style`` and ``script`` elements (identifiers, hashes, codes, the leaf bytes) and the
language switch. What remains may hold Latin letters only as the words of :data:`ALLOWED`
(acronyms and names of standards) or as tokens with a digit (ids, dates like ``2026-06-10``).
"""

from __future__ import annotations

import re

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
    found = []
    for token in _WORD.findall(text):
        if any(ch.isdigit() for ch in token):
            continue  # an id, a date, a number
        for word in re.split(r"[_.:@-]", token):
            if len(word) >= 2 and re.search(r"[A-Za-z]{2}", word) and word not in ALLOWED | also:
                found.append(token)
                break
    return found
