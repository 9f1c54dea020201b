"""Email HTML for display (SPEC §9): sanitized with ``nh3`` (Ammonia), remote content blocked.

``clean_email_html(html, *, inline_images={}, allow_remote=False, stats=None)`` → an HTML
fragment that is safe to put in a sandboxed iframe's ``srcdoc``:

- only Ammonia's default tags plus the table/font attributes mail layouts use; no
  script, style element, form, frame, object, embed, link or meta survives, nor any
  event-handler attribute; ``<script>`` and ``<style>`` lose their content too;
- ``style`` attributes keep only the properties in ``STYLE_PROPERTIES`` — none of them
  can carry a URL (no ``background``, ``background-image``, ``list-style-image``,
  ``content``, ``cursor``…), so CSS cannot load anything;
- ``<img src>``: ``cid:`` references become the address the caller gives for that inline
  part (``inline_images``: content-id → a same-origin path, which serves the part's bytes
  to this reader only — the page never embeds them, so an image referenced 300 times is
  300 short addresses and one download); a ``cid:`` with no address (not an image, too
  large, over the page's allowance) loses its source and is counted in
  ``stats["hidden"]``; ``http(s)`` sources are removed unless ``allow_remote`` (the
  reader asked for them); every other source (relative, protocol-relative,
  ``javascript:``…) is removed;
- links keep only absolute ``http``, ``https``, ``mailto`` and ``tel`` targets and open in
  a new tab with ``rel="noopener noreferrer"``.

``blocked_remote(html)`` tells whether the message has remote images to offer.

``clean_outgoing_html(html, image_src=…)`` is the same allowlist for mail written in bccd
(SPEC §12: compose HTML, templates, signatures): the same tags, attributes, style
properties and link schemes, with links left as written (no ``target``) and each
``<img src>`` decided by ``image_src`` (the new value, or None to drop it) — compose
turns ``data:`` images into ``cid:`` parts there, before anything else sees the HTML;
with ``link_href``, each ``http(s)`` ``href`` becomes what it returns (the tracked
address of a link, SPEC §13).
The sanitizer is the first wall; the page's Content-Security-Policy (inherited by the
``srcdoc`` document) and the iframe sandbox (no scripts, no same-origin) are the others.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping

import nh3

MAX_INLINE = 2 * 1024 * 1024
LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
URL_ATTRS = frozenset({"href", "src", "cite", "background", "longdesc", "usemap", "action"})

STYLE_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "font-variant", "line-height", "letter-spacing", "word-spacing",
    "text-align", "text-decoration", "text-indent", "text-transform", "vertical-align",
    "white-space", "word-break", "word-wrap", "overflow-wrap", "direction",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-radius", "border-collapse",
    "border-spacing", "width", "max-width", "min-width", "height", "max-height",
    "min-height", "display", "table-layout", "list-style-type", "caption-side",
})

_TAG_ATTRS = copy.deepcopy(nh3.ALLOWED_ATTRIBUTES)
_TAG_ATTRS.setdefault("*", set()).update({"style", "dir", "lang", "title", "align"})
for _t in ("table", "td", "th", "tr", "tbody", "thead", "tfoot"):
    _TAG_ATTRS.setdefault(_t, set()).update(
        {"width", "height", "bgcolor", "valign", "border", "cellpadding", "cellspacing"})
_TAG_ATTRS.setdefault("font", set()).update({"color", "face", "size"})
_TAG_ATTRS["img"] = {"src", "alt", "width", "height", "align", "border"}
_TAGS = set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}
_REMOTE = re.compile(r"^\s*https?://", re.IGNORECASE)
_SCHEME = re.compile(r"^\s*([a-z][a-z0-9+.-]*):", re.IGNORECASE)


def _cid(value: str) -> str:
    v = value.strip()[4:].strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1]
    return v.lower()


def clean_email_html(
    html: str,
    *,
    inline_images: Mapping[str, str] | None = None,
    allow_remote: bool = False,
    stats: dict[str, int] | None = None,
) -> str:
    images = {k.strip("<>").lower(): v for k, v in (inline_images or {}).items()}
    counts = stats if stats is not None else {}
    counts.setdefault("hidden", 0)

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr not in URL_ATTRS:
            return value
        if tag == "img" and attr == "src":
            if value.strip().lower().startswith("cid:"):
                found = images.get(_cid(value))
                if found is None or not found.startswith("/") or found.startswith("//"):
                    counts["hidden"] += 1
                    return None
                return found
            return value.strip() if allow_remote and _REMOTE.match(value) else None
        if attr in ("href", "cite"):
            m = _SCHEME.match(value)
            return value.strip() if m and m.group(1).lower() in LINK_SCHEMES else None
        return None

    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_TAG_ATTRS,
        url_schemes={"http", "https", "mailto", "tel", "cid"},
        attribute_filter=attribute_filter,
        filter_style_properties=set(STYLE_PROPERTIES),
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def clean_outgoing_html(html: str, *, image_src: Callable[[str], str | None],
                        link_href: Callable[[str], str] | None = None) -> str:
    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr not in URL_ATTRS:
            return value
        if tag == "img" and attr == "src":
            return image_src(value.strip())
        if attr in ("href", "cite"):
            m = _SCHEME.match(value)
            if not m or m.group(1).lower() not in LINK_SCHEMES:
                return None
            if attr == "href" and link_href is not None and m.group(1).lower() in ("http", "https"):
                return link_href(value.strip())
            return value.strip()
        return None

    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_TAG_ATTRS,
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        attribute_filter=attribute_filter,
        filter_style_properties=set(STYLE_PROPERTIES),
        link_rel=None,
        strip_comments=True,
    )


def blocked_remote(html: str) -> bool:
    """Does the (raw) HTML reference remote images a reader could choose to load?"""
    return bool(re.search(r"<img\b[^>]*\bsrc\s*=\s*[\"']?\s*https?://", html, re.IGNORECASE))
