"""What tracking changes in a message sent from bccd (SPEC §13): its recipients' HTML.

``Plan`` is the decision for one message (``bccd.tracking.policy.plan``): its random
tracking id, whether opens and clicks are tracked, when its tokens were issued, the
public address of the tracking endpoints and the signing key. ``Rewriter(plan)`` is
used by ``bccd.compose.mime`` while it builds the recipients' copy:

- ``href(url)`` → the address that stands for an ``http(s)`` link
  (``<public_url>/t/c/<token>``): each distinct URL gets one index, in order of first
  appearance, and ``links`` lists them — that list is stored with the message and is the
  only place a redirect's target is ever taken from. A URL longer than ``MAX_URL`` or
  past the ``MAX_LINKS``-th is left as written (not tracked).
- ``decoy()`` — the hidden link, first in the HTML when clicks are tracked and the message
  has a link: an empty ``<a>`` with ``display:none``, ``aria-hidden`` and
  ``tabindex="-1"``, so no person can see, reach or click it (``rules``: ``decoy``).
- ``pixel()`` — the 1×1 image at ``<public_url>/t/o/<token>``, last in the HTML.

The user's own copy (filed in bccd and appended to the sent folder) is built without any
of this, so neither the user's mail program nor bccd's Mail page ever loads the pixel or
goes through a tracked link; and the plain-text alternative is the same in both copies:
no pixel, links as written — a reader of plain text sees where each link goes.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass, field

from bccd.tracking import tokens

MAX_LINKS = 200
MAX_URL = 2048
_HTTP = re.compile(r"^https?://", re.IGNORECASE)
DECOY_HTML = ('<a href="{href}" style="display:none;font-size:0;line-height:0" '
              'aria-hidden="true" tabindex="-1"></a>')
PIXEL_HTML = ('<img src="{src}" width="1" height="1" alt="" '
              'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">')


@dataclass(frozen=True, slots=True)
class Plan:
    tracking_id: int
    opens: bool
    clicks: bool
    issued: int               # Unix seconds
    base_url: str             # http.public_url (or the listen address), no trailing slash
    key: bytes = field(repr=False)

    def url(self, kind: str, link: int) -> str:
        token = tokens.issue(self.key, kind, self.tracking_id, link, self.issued)
        return f"{self.base_url}/t/{kind}/{token}"


class Rewriter:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.links: list[str] = []
        self._index: dict[str, int] = {}

    def href(self, url: str) -> str:
        if not self.plan.clicks or not _HTTP.match(url) or len(url) > MAX_URL:
            return url
        own = f"{self.plan.base_url}/t/"
        if url.startswith(own):
            return url  # already one of ours (a quoted tracked message): never wrapped twice
        index = self._index.get(url)
        if index is None:
            if len(self.links) >= MAX_LINKS:
                return url
            index = self._index[url] = len(self.links)
            self.links.append(url)
        return self.plan.url("c", index)

    def decoy(self) -> str:
        if not self.plan.clicks or not self.links:
            return ""
        return DECOY_HTML.format(href=htmllib.escape(self.plan.url("c", tokens.DECOY)))

    def pixel(self) -> str:
        if not self.plan.opens:
            return ""
        return PIXEL_HTML.format(src=htmllib.escape(self.plan.url("o", 0)))

    def wrap(self, rewritten_html: str) -> str:
        """The recipients' HTML: the decoy first, the (already rewritten) body, the pixel."""
        return self.decoy() + rewritten_html + self.pixel()
