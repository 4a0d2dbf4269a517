"""A version's model card (its README.md) as HTML: Markdown rendered by markdown-it-py (CommonMark,
tables, strikethrough; raw HTML allowed in, as cards use it), then sanitised by nh3 (the ammonia
crate) with an allowlist: no script, no style, no event handler, no `javascript:` or `data:` URL.
Images then pass one more rule: an image on a host the operator listed (ADAPTERS_UI_IMAGE_HOSTS)
stays, any other remote one becomes a link, so that reading a card makes the browser fetch nothing
elsewhere; a relative one becomes its alt text (a version holds no image files: push accepts
adapter files, cards, tokenizer files and JSON only). The pages' CSP (session.csp) names the same hosts."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt

from registry.services.model_card import FRONT_MATTER

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s",
    "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
}
SCHEMES = {"http", "https", "mailto"}
_MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def _host_allowed(url: str, hosts: frozenset[str]) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or "@" in parts.netloc:
        return False
    return "*" in hosts or parts.netloc.lower() in hosts


class _Images(HTMLParser):
    """Re-writes sanitised HTML (nh3's output: allowlisted tags only), escaping every text and
    attribute again, and decides each image."""

    def __init__(self, hosts: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.hosts, self.out = hosts, list[str]()

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], close: bool = False) -> str:
        text = "".join(f' {k}="{html.escape(v or "", quote=True)}"' for k, v in attrs)
        return f"<{tag}{text}{' /' if close else ''}>"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        got = dict(attrs)
        if tag == "img":
            self.out.append(self._image(got.get("src") or "", got.get("alt") or "", attrs))
            return
        if tag == "a" and got.get("href") is not None:
            attrs = [*attrs, ("rel", "nofollow noopener noreferrer")]
        self.out.append(self._open(tag, attrs))

    def _image(self, src: str, alt: str, attrs: list[tuple[str, str | None]]) -> str:
        parts = urlsplit(src)
        if not parts.scheme and not parts.netloc:
            return f'<span class="card-image-missing">[image: {html.escape(alt or src)}]</span>'
        if _host_allowed(src, self.hosts):
            return self._open("img", attrs)
        where = html.escape(parts.netloc or src)
        return (
            f'<a class="remote-image" href="{html.escape(src, quote=True)}" rel="nofollow noopener '
            f'noreferrer">[image{": " + html.escape(alt) if alt else ""} \u2014 {where}]</a>'
        )

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))


def render(text: str, image_hosts: frozenset[str] = frozenset()) -> str:
    """The card's body (front matter left out: the facts above show it) as safe HTML."""
    found = FRONT_MATTER.match(text)
    if found is not None:
        text = text[found.end() :]
    dirty = _MD.render(text)
    clean = nh3.clean(
        dirty,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=SCHEMES,
        link_rel=None,
        strip_comments=True,
    )
    rewriter = _Images(image_hosts)
    rewriter.feed(clean)
    rewriter.close()
    return "".join(rewriter.out)
