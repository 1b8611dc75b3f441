"""Escaping for everything that reaches the site from the catalog or the results.

Nothing read from ``catalog/`` or ``results/`` is trusted as Markdown or HTML.
``md`` turns a string into Markdown that renders as exactly that text: every
character Markdown or HTML gives meaning to becomes a numeric character
reference, which Python-Markdown passes through untouched and the browser
shows as the character. The same output is safe inside raw HTML blocks and
inside Markdown table cells (``|`` is escaped too).
"""
from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

# characters that mean something to Markdown (incl. tables, attr_list, pymdownx) or to HTML
_SPECIAL = set("&<>\"'`*_[]|\\#{}()!~^=+-:$%@")
_TABLE = {c: f"&#{ord(c)};" for c in _SPECIAL}
_WS = re.compile(r"\s+")
_TAG_OK = re.compile(r"[^A-Za-z0-9 ._+\-]")
_SLUG = re.compile(r"[^a-z0-9]+")
_ORDERED = re.compile(r"^(\d+)\.")


def md(value: object) -> str:
    """Markdown that renders as the literal text of ``value`` (whitespace collapsed to single spaces)."""
    if value is None:
        return ""
    text = _WS.sub(" ", str(value)).strip()
    out = "".join(_TABLE.get(c, c) for c in text)
    m = _ORDERED.match(out)  # "1986. ..." at the start of a line would open an ordered list
    return out if not m else m.group(1) + "&#46;" + out[m.end():]


def code(value: object) -> str:
    """Inline code that shows ``value`` literally."""
    return f"<code>{md(value)}</code>"


def fence(text: str, lang: str = "") -> str:
    """A fenced code block holding ``text`` verbatim; the fence is longer than any backtick run inside."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}{lang}\n{text.rstrip()}\n{bar}\n"


def url(value: str | None) -> str | None:
    """A link target for http(s) URLs, percent-encoded so it cannot end the Markdown link; None otherwise."""
    if not value:
        return None
    value = str(value).strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return quote(value, safe=":/?#@!$&',;=%~+*")


def link(text: object, target: str) -> str:
    """``[text](target)`` to a page of this site (``target`` is generated here, never read from data)."""
    return f"[{md(text)}]({target})"


def external(text: object, target: str | None) -> str:
    """``[text](url)`` for an http(s) URL from the data, or the escaped text alone when the URL is unsafe."""
    safe = url(target)
    return f"[{md(text)}]({safe})" if safe else md(text)


def tag(value: object) -> str:
    """A tag name reduced to characters that are safe everywhere material renders tags unescaped."""
    return _WS.sub(" ", _TAG_OK.sub("", str(value))).strip()


def slug(value: object) -> str:
    """A file-name-safe slug: lowercase letters, digits and hyphens."""
    s = _SLUG.sub("-", str(value).lower()).strip("-")
    return s or "x"
